/**
 * Notebook runs and sweeps: a job whose command is papermill over a notebook in /code, its
 * parameters typed JSON, a sweep an indexed job array over the cartesian product of its axes.
 *
 * Values never become script text: the entry is a constant `sh -c` script (plus a constant Python
 * program) that reads the notebook path and the parameter sets from the job's env, which lives in
 * its Secret. The parameters are not secret, so they are also kept (compact, unexpanded) in an
 * annotation for `job show` — the Secret is never read back to display anything.
 */

/** JSON as the API accepts it for a parameter value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type Parameters = Record<string, JsonValue>;
export type Sweep = Record<string, JsonValue[]>;

export interface NotebookRun {
  /** Path of the .ipynb relative to /code (the job's working directory). */
  notebook: string;
  parameters?: Parameters;
  sweep?: Sweep;
}

export const notebookLimits = {
  pathLength: 1024,
  parameters: 64,
  /** JSON text of all parameters together; the annotation that records them must stay well under 256 KiB. */
  parametersBytes: 32 * 1024,
  sweepAxes: 8,
  sweepValues: 1000,
  sweepBytes: 32 * 1024,
  /**
   * All parameter sets of a sweep: one env variable (KBATCH_SWEEP), and Linux refuses to exec with
   * an env string above 128 KiB (MAX_ARG_STRLEN), so the bound stays below that.
   */
  sweepExpandedBytes: 120 * 1024,
} as const;

/** A Python identifier that papermill can assign in the injected cell (ASCII only, no keyword). */
export const parameterNamePattern = '^[A-Za-z_][A-Za-z0-9_]{0,63}$';

const pythonKeywords = new Set(
  (
    'False None True and as assert async await break class continue def del elif else except finally for from global if import in is ' +
    'lambda nonlocal not or pass raise return try while with yield'
  ).split(' '),
);

export function isParameterName(name: string): boolean {
  return new RegExp(parameterNamePattern).test(name) && !pythonKeywords.has(name);
}

/** Why a notebook path is refused, or undefined: relative, inside /code, a .ipynb. */
export function notebookPathProblem(path: string): string | undefined {
  if (!path.endsWith('.ipynb')) return 'must name a .ipynb file';
  if (path.startsWith('/')) return "must be relative to /code (the job's working directory)";
  if (path.split('/').some((part) => part === '..' || part === '')) return 'must stay inside /code (no "..", no empty segment)';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f]/.test(path)) return 'must not hold control characters';
  return undefined;
}

/** The number of indexes of a sweep: the product of its axes' lengths (1 without a sweep). */
export function sweepSize(sweep: Sweep | undefined): number {
  return Object.values(sweep ?? {}).reduce((product, values) => product * values.length, 1);
}

/**
 * The parameter set of every index, in index order: the fixed parameters, then one value per axis;
 * the last axis varies fastest (as nested loops written in the order given).
 */
export function parameterSets(run: Pick<NotebookRun, 'parameters' | 'sweep'>): Parameters[] {
  let sets: Parameters[] = [{ ...(run.parameters ?? {}) }];
  for (const [name, values] of Object.entries(run.sweep ?? {})) {
    sets = sets.flatMap((set) => values.map((value) => ({ ...set, [name]: value })));
  }
  return sets;
}

/** The file name of the executed notebook of an index, under $KBATCH_OUTPUTS_DIR. */
export function executedNotebookName(notebook: string, index?: number): string {
  const base = notebook.slice(notebook.lastIndexOf('/') + 1).replace(/\.ipynb$/, '');
  return `${base}${index === undefined ? '' : `-${index}`}.ipynb`;
}

/** Env of the job (its Secret): the notebook and the parameter set(s) as JSON. */
export function notebookEnv(run: NotebookRun): Record<string, string> {
  const env: Record<string, string> = { KBATCH_NOTEBOOK: run.notebook };
  if (run.sweep && Object.keys(run.sweep).length) env.KBATCH_SWEEP = JSON.stringify(parameterSets(run));
  else env.KBATCH_PARAMETERS = JSON.stringify(run.parameters ?? {});
  return env;
}

/**
 * The Python side, run by the interpreter that imports papermill. No single quote in it: the shell
 * script holds it in single quotes. Everything variable comes from the environment.
 */
const pythonProgram = `
import json, logging, os
import papermill
# As the papermill CLI does, so the output of the cells reaches the job log.
logging.basicConfig(level=logging.INFO, format="%(message)s")
notebook = os.environ["KBATCH_NOTEBOOK"]
sweep = os.environ.get("KBATCH_SWEEP")
index = os.environ.get("JOB_COMPLETION_INDEX") or "0"
if sweep is not None:
    parameters = json.loads(sweep)[int(index)]
    suffix = "-" + index
else:
    parameters = json.loads(os.environ.get("KBATCH_PARAMETERS") or "{}")
    suffix = ""
# kbatch sets KBATCH_OUTPUTS_DIR on both backends; run elsewhere, /outputs if mounted, else ./outputs.
outputs = os.environ.get("KBATCH_OUTPUTS_DIR") or ("/outputs" if os.path.isdir("/outputs") else os.path.abspath("outputs"))
os.makedirs(outputs, exist_ok=True)
stem = os.path.basename(notebook)[: -len(".ipynb")]
output = os.path.join(outputs, stem + suffix + ".ipynb")
print("kbatch: papermill " + notebook + " -> " + output + " with " + json.dumps(parameters, sort_keys=True), flush=True)
# In the directory of the notebook, as Jupyter runs it, so its relative paths find its files.
papermill.execute_notebook(notebook, output, parameters=parameters, cwd=os.path.dirname(notebook) or None, log_output=True, progress_bar=False)
`.trim();

/**
 * The container's command: find a Python that imports papermill (python3, then python), else say
 * so in the log and exit 127 (the shell's "command not found"), so a missing papermill is a failed
 * job with a reason, not a silent one.
 */
export function notebookCommand(): string[] {
  const script = [
    'py=""',
    'for candidate in python3 python; do',
    '  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import papermill" >/dev/null 2>&1; then py="$candidate"; break; fi',
    'done',
    'if [ -z "$py" ]; then',
    '  echo "kbatch: papermill is not installed in image ${JUPYTER_IMAGE:-(unknown)}: pip install papermill (and ipykernel) in the image" >&2',
    '  exit 127',
    'fi',
    `exec "$py" -c '${pythonProgram}'`,
  ].join('\n');
  return ['sh', '-c', script];
}

/** What the notebook annotation holds: the run as given (compact; show expands a sweep per index). */
export function notebookAnnotation(run: NotebookRun): string {
  return JSON.stringify(run);
}

/** The notebook view of `job show`: the run and, for a sweep, each index's parameter set and output. */
export interface NotebookView {
  notebook: string;
  parameters: Parameters;
  sweep?: Sweep;
  /** Whether kbatch built the command (native spec) or recognised a papermill command (upstream). */
  source: 'spec' | 'command';
  runs: { index?: number; parameters: Parameters; output: string }[];
}

/** Only kbatch writes the annotation, but a view must never fail a `job show`: anything odd is no view. */
export function notebookView(annotation: string | undefined): NotebookView | undefined {
  try {
    return annotation ? readNotebookAnnotation(annotation) : undefined;
  } catch {
    return undefined;
  }
}

function readNotebookAnnotation(annotation: string): NotebookView | undefined {
  const run = JSON.parse(annotation) as NotebookRun & { source?: 'command'; output?: string };
  if (typeof run?.notebook !== 'string') return undefined;
  if (run.sweep && !Object.values(run.sweep).every(Array.isArray)) return undefined;
  const swept = Boolean(run.sweep && Object.keys(run.sweep).length);
  const runs = parameterSets(run).map((parameters, index) => ({
    ...(swept ? { index } : {}),
    parameters,
    output: run.output ?? executedNotebookName(run.notebook, swept ? index : undefined),
  }));
  return {
    notebook: run.notebook,
    parameters: run.parameters ?? {},
    ...(swept ? { sweep: run.sweep } : {}),
    source: run.source === 'command' ? 'command' : 'spec',
    runs,
  };
}

/**
 * Recognises a papermill run in a plain command (the upstream API has no notebook fields):
 * `papermill IN OUT [options]` or `python[3] -m papermill IN OUT [options]`, the executable given
 * by name or path. `-p NAME VALUE` is typed as papermill types it (int, float, True/False, None,
 * else text); `-r NAME VALUE` is text. Anything inside `sh -c` is not parsed (it is not a papermill
 * command line until a shell has read it). Returns the run with the output path as given.
 */
export function recognisePapermill(argv: string[]): (NotebookRun & { source: 'command'; output: string }) | undefined {
  const base = (word: string | undefined) => (word ?? '').slice((word ?? '').lastIndexOf('/') + 1);
  let rest: string[];
  if (base(argv[0]) === 'papermill') rest = argv.slice(1);
  else if (/^python(3(\.\d+)?)?$/.test(base(argv[0])) && argv[1] === '-m' && argv[2] === 'papermill') rest = argv.slice(3);
  else return undefined;
  const positional: string[] = [];
  const parameters: Parameters = {};
  for (let i = 0; i < rest.length; i++) {
    const word = rest[i]!;
    if ((word === '-p' || word === '--parameters') && i + 2 < rest.length) {
      parameters[rest[i + 1]!] = papermillTyped(rest[i + 2]!);
      i += 2;
    } else if ((word === '-r' || word === '--parameters_raw') && i + 2 < rest.length) {
      parameters[rest[i + 1]!] = rest[i + 2]!;
      i += 2;
    } else if (word.startsWith('-')) {
      // `--option=value` is one word; the options below take the next word; the rest are flags.
      if (papermillValueOptions.has(word)) i += 1;
    } else positional.push(word);
  }
  const [notebook, output] = positional;
  if (!notebook || !output) return undefined;
  return { notebook, output, parameters, source: 'command' };
}

/** The annotation of a command recognised as papermill, unless it is too large to record (it still runs). */
export function recognisedPapermill(argv: string[]): string | undefined {
  const run = recognisePapermill(argv);
  const text = run && JSON.stringify(run);
  return text && Buffer.byteLength(text) <= notebookLimits.parametersBytes ? text : undefined;
}

/** papermill's options that take one value (papermill/cli.py); its other options are flags. */
const papermillValueOptions = new Set([
  '-f',
  '--parameters_file',
  '-y',
  '--parameters_yaml',
  '-b',
  '--parameters_base64',
  '-k',
  '--kernel',
  '-l',
  '--language',
  '--cwd',
  '--engine',
  '--log-level',
  '--start-timeout',
  '--start_timeout',
  '--execution-timeout',
  '--stdout-file',
  '--stderr-file',
  '--autosave-cell-every',
]);

/** papermill's `-p` typing (papermill.cli._resolve_type): int, float, booleans and None, else the text. */
function papermillTyped(value: string): JsonValue {
  if (value === 'True' || value === 'true') return true;
  if (value === 'False' || value === 'false') return false;
  if (value === 'None') return null;
  if (/^[-+]?\d+$/.test(value)) return Number(value);
  if (/^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$/.test(value)) return Number(value);
  return value;
}
