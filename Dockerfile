# One image for the three functions; each Knative Service picks its bundle with `command`.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

FROM node:24-bookworm-slim
WORKDIR /app
COPY --from=build /src/dist ./dist
ENV NODE_ENV=production PORT=8080 KBATCH_HOST=0.0.0.0
USER node
EXPOSE 8080
CMD ["node", "dist/server.mjs"]
