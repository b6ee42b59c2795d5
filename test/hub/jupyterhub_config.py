# JupyterHub config for the kbatch integration tests. Everything variable comes from env vars set by
# test/stack/hub.ts, so the same file serves any number of parallel hubs (each with its own ports and tmp dir).
import os

from jupyterhub import version_info
from jupyterhub.spawner import Spawner


def env(name):
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"jupyterhub_config.py: {name} must be set (see test/stack/hub.ts)")
    return value


state_dir = env("KBATCH_HUB_STATE_DIR")
proxy_port = int(env("KBATCH_HUB_PROXY_PORT"))
proxy_api_port = int(env("KBATCH_HUB_PROXY_API_PORT"))
hub_port = int(env("KBATCH_HUB_PORT"))

c = get_config()  # noqa: F821 (provided by traitlets when the file is loaded)

# --- network: loopback only --------------------------------------------------------------------------------
# Optional base_url (e.g. /compute/) so tests can exercise a service prefix other than /services/kbatch/. It must go
# into bind_url's path: setting c.JupyterHub.base_url (deprecated alias) resets bind_url's host to the default :8000.
base_url = os.environ.get("KBATCH_HUB_BASE_URL", "/")
c.JupyterHub.bind_url = f"http://127.0.0.1:{proxy_port}{base_url}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{proxy_api_port}"
# Known token so hub.ts can read CHP's routing table directly (GET /api/routes) while waiting for the kbatch route.
c.ConfigurableHTTPProxy.auth_token = env("KBATCH_HUB_PROXY_AUTH_TOKEN")
# The npm-installed CHP (node_modules/.bin); hub.ts puts node_modules/.bin first on PATH so it runs on Node 24.
c.ConfigurableHTTPProxy.command = [env("KBATCH_HUB_CHP_COMMAND")]
c.ConfigurableHTTPProxy.log_level = os.environ.get("KBATCH_HUB_PROXY_LOG_LEVEL", "warn")
c.ConfigurableHTTPProxy.pid_file = os.path.join(state_dir, "jupyterhub-proxy.pid")

# --- state: all inside the per-run tmp dir -----------------------------------------------------------------
c.JupyterHub.db_url = "sqlite:///" + os.path.join(state_dir, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(state_dir, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(state_dir, "jupyterhub.pid")
# hub.ts sends stdout/stderr to a file in state_dir; INFO keeps request lines there for failure diagnosis.
c.JupyterHub.log_level = os.environ.get("KBATCH_HUB_LOG_LEVEL", "INFO")

# --- users -------------------------------------------------------------------------------------------------
c.JupyterHub.authenticator_class = "dummy"
# alice and bob may use kbatch; carol is a valid user without the kbatch scope.
# The identity suite (test/integration/identity.test.ts) adds names the namespace mapping must keep apart or
# turn into valid labels: a crafted name that collided with first.last under the old 28-bit hash, unicode and
# symbol-only names, and erin, whose namespace that suite pre-creates for someone else. JupyterHub 6.1 accepts
# any lower-cased name without "/", outer spaces, or only dots ("..." is refused at startup).
identity_users = {"first.last", "-__first.@.~last_~._", "田中太郎", "😀", "-", ".-.", "erin"}
c.Authenticator.allowed_users = {"alice", "bob", "carol", "dora"} | identity_users
# dora is a Hub admin: her tokens (default "inherit" permissions) carry admin:users, kbatch's default
# admin scope for listing every user's jobs (test/integration/operator.test.ts).
c.Authenticator.admin_users = {"dora"}


class NoSpawner(Spawner):
    """The tests never start single-user servers; fail loudly if something tries."""

    async def start(self):
        raise RuntimeError("kbatch test hub: spawning single-user servers is disabled")

    async def poll(self):
        return 0

    async def stop(self, now=False):
        pass


c.JupyterHub.spawner_class = NoSpawner
c.JupyterHub.implicit_spawn_seconds = 0
c.JupyterHub.redirect_to_server = False

# --- services ----------------------------------------------------------------------------------------------
kbatch_service = {"name": "kbatch", "url": env("KBATCH_SERVICE_URL"), "display": False}
# The web page (lib/web): kbatch is an OAuth client of the Hub, and the Hub's home links to it.
oauth_secret = os.environ.get("KBATCH_HUB_OAUTH_SECRET")
if oauth_secret:
    kbatch_service.update(
        {
            # The service's API token doubles as its OAuth client secret (kbatch's KBATCH_OAUTH_CLIENT_SECRET).
            "api_token": oauth_secret,
            "oauth_client_id": "service-kbatch",
            # Relative: the browser reaches the Hub and kbatch on the same host, through the proxy.
            "oauth_redirect_uri": base_url + "services/kbatch/oauth_callback",
            # Tokens the Hub issues to kbatch for a browser only identify the user and reach kbatch itself.
            "oauth_client_allowed_scopes": ["access:services!service=kbatch"],
            # An admin-run service is part of the Hub: no "Authorize access" page in the way.
            "oauth_no_confirm": True,
            "display": True,
        }
    )
if version_info >= (6,):
    # 6.x waits up to `timeout` (default 30 s) for the service to answer (any non-5xx at url + prefix) before it
    # adds ANY proxy route, so a not-yet-running service would stall startup; after the timeout it only warns.
    # 5.x rejects the key ("No such service field").
    kbatch_service["timeout"] = int(os.environ.get("KBATCH_HUB_SERVICE_TIMEOUT", "3"))

c.JupyterHub.services = [
    # Only scheme/host/port of url are used: CHP routes /services/kbatch → url and keeps the full path.
    kbatch_service,
    # The test harness itself: creates user tokens through the REST API.
    {"name": "test-admin", "api_token": env("KBATCH_HUB_ADMIN_TOKEN"), "display": False},
]

c.JupyterHub.load_roles = [
    {
        "name": "test-admin",
        "scopes": ["admin:users", "tokens", "read:users"],
        "services": ["test-admin"],
    },
    # Users don't get access:services by default (jupyterhub#3466); kbatch requires this exact scope.
    {
        "name": "kbatch-users",
        "scopes": ["access:services!service=kbatch"],
        "users": ["alice", "bob", "dora", *sorted(identity_users)],
    },
]
