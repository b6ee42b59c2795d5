/**
 * The page's stylesheet, served as /static/app.css. A string in a module (not a file read at start)
 * so the esbuild bundles of the functions carry it. Colours meet WCAG AA contrast (4.5:1 for text)
 * on their backgrounds; states are told by text as well as colour.
 */
export const appStyles = String.raw`
:root {
  --fg: #1b1f24; --muted: #4a5360; --bg: #ffffff; --panel: #f4f6f8; --line: #c9d1d9;
  --accent: #0b57d0; --accent-fg: #ffffff; --danger: #b3261e; --ok: #116329; --warn: #7a4d00; --run: #0b57d0;
  --focus: #ffbf47;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 16px; line-height: 1.45;
  color: var(--fg); background: var(--bg);
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; }
a { color: var(--accent); }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.skip { position: absolute; left: -9999px; top: 0; background: var(--bg); padding: .5rem; }
.skip:focus { left: .5rem; }
.top { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: center; justify-content: space-between;
  padding: .6rem 1rem; border-bottom: 1px solid var(--line); background: var(--panel); }
.top nav { display: flex; flex-wrap: wrap; gap: 1rem; align-items: baseline; }
.top nav a { text-decoration: none; font-weight: 600; }
.top nav a:hover { text-decoration: underline; }
.brand { font-size: 1.2rem; color: var(--fg) !important; }
.who { margin: 0; color: var(--muted); }
main { padding: 1rem; max-width: 72rem; margin: 0 auto; }
h1 { font-size: 1.5rem; margin: .2rem 0 1rem; overflow-wrap: anywhere; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
.toolbar { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin: .5rem 0 1rem; }
.toolbar .spacer { flex: 1; }
.toolbar.heading { margin: 1.5rem 0 .5rem; }
.toolbar.heading h2 { margin: 0; }
.toolbar select { width: auto; max-width: 100%; }
button, .button { font: inherit; padding: .45rem .9rem; border-radius: 6px; border: 1px solid var(--accent);
  background: var(--accent); color: var(--accent-fg); cursor: pointer; text-decoration: none; display: inline-block; }
button.secondary, .button.secondary { background: var(--bg); color: var(--accent); }
button.danger { background: var(--danger); border-color: var(--danger); }
button:disabled { opacity: .55; cursor: not-allowed; }
.table-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; padding: .5rem; color: var(--muted); caption-side: bottom; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--panel); font-weight: 600; white-space: nowrap; }
td.name { overflow-wrap: anywhere; min-width: 10rem; }
td.image { overflow-wrap: anywhere; font-family: ui-monospace, monospace; font-size: .9rem; }
.state { display: inline-block; padding: .05rem .5rem; border-radius: 999px; font-weight: 600; font-size: .9rem; border: 1px solid currentColor; }
.state-succeeded { color: var(--ok); } .state-failed { color: var(--danger); } .state-running { color: var(--run); }
.state-pending, .state-suspended { color: var(--warn); }
.muted { color: var(--muted); }
.why { padding: .6rem .8rem; border-radius: 6px; background: var(--panel); border-left: 4px solid var(--warn); color: var(--warn); font-weight: 600; overflow-wrap: anywhere; }
.notice { padding: .6rem .8rem; border-radius: 6px; background: var(--panel); border-left: 4px solid var(--accent); margin: .5rem 0; }
.error, .notice.error { color: var(--danger); border-left-color: var(--danger); }
.state-loading { color: var(--muted); }
.empty { padding: 2rem 1rem; text-align: center; color: var(--muted); border: 1px dashed var(--line); border-radius: 6px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.log { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: .85rem; background: #0d1117; color: #e6edf3;
  border-radius: 6px; padding: .5rem .75rem; height: 28rem; max-height: 70vh; overflow: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
.log .line { min-height: 1.2em; }
.log .meta { color: #9fb0c0; font-style: italic; }
form.submit { display: grid; gap: 1rem; max-width: 44rem; }
.field { display: grid; gap: .25rem; }
.field label, .field legend { font-weight: 600; }
.field .hint { color: var(--muted); font-size: .9rem; }
.field .field-error { color: var(--danger); font-weight: 600; }
.field .field-error:empty { display: none; }
input[type=text], input[type=number], select, textarea { font: inherit; padding: .4rem .5rem; border: 1px solid #6b7682; border-radius: 6px; width: 100%; background: var(--bg); color: var(--fg); }
input[aria-invalid=true], textarea[aria-invalid=true], select[aria-invalid=true] { border-color: var(--danger); border-width: 2px; }
textarea { min-height: 5rem; font-family: ui-monospace, monospace; }
fieldset { border: 1px solid var(--line); border-radius: 6px; padding: .75rem; margin: 0; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(12rem, 1fr)); gap: .75rem; }
.drop { border: 2px dashed #6b7682; border-radius: 6px; padding: 1rem; text-align: center; }
.drop.over { border-color: var(--accent); background: #e8f0fe; }
progress { width: 100%; height: 1rem; }
dialog { border: 1px solid var(--line); border-radius: 8px; max-width: 30rem; }
p.check { display: flex; gap: .4rem; align-items: baseline; }
p.check input { flex: none; }
dialog::backdrop { background: rgba(0, 0, 0, .4); }
@media (max-width: 40rem) {
  main { padding: .6rem; }
  th.opt, td.opt { display: none; }
  .log { height: 20rem; }
  /* Tables of jobs and pods become one card per row, each cell labelled, instead of scrolling sideways. */
  table.cards thead { position: absolute; left: -9999px; }
  table.cards tr { display: block; border-bottom: 1px solid var(--line); padding: .35rem 0; }
  table.cards td, table.cards td.opt { display: flex; gap: .75rem; border: 0; padding: .15rem .6rem; }
  table.cards td::before { content: attr(data-label); flex: 0 0 6.5rem; color: var(--muted); font: 600 1rem system-ui, sans-serif; }
}
@media (prefers-reduced-motion: reduce) { * { scroll-behavior: auto !important; } }
`;
