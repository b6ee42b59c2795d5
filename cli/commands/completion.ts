import type { OptionSpec } from '../args.ts';
import { globalOptions, type Command, type Group } from '../command.ts';
import { UsageError } from '../errors.ts';

/**
 * Shell completion. Each shell's script asks the CLI itself (`kbatch __complete WORDS...`), so the
 * candidates always match the installed version's commands and flags.
 */

const scripts: Record<string, string> = {
  bash: `# kbatch completion for bash: source <(kbatch completion bash)
_kbatch() {
  local IFS=$'\\n'
  COMPREPLY=( $(kbatch __complete "\${COMP_WORDS[@]:1:$COMP_CWORD}" 2>/dev/null) )
}
complete -o default -F _kbatch kbatch
`,
  zsh: `#compdef kbatch
# kbatch completion for zsh: source <(kbatch completion zsh), after compinit
_kbatch() {
  local -a candidates
  candidates=("\${(@f)$(kbatch __complete "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  compadd -a candidates
}
compdef _kbatch kbatch
`,
  fish: `# kbatch completion for fish: kbatch completion fish | source
complete -c kbatch -f -a '(kbatch __complete (commandline -opc)[2..-1] (commandline -ct))'
`,
};

export const completionCommand: Command = {
  kind: 'command',
  name: 'completion',
  summary: 'Print a shell completion script: bash, zsh or fish.',
  positionals: [{ name: 'SHELL' }],
  options: [],
  examples: [
    'source <(kbatch completion bash)      # add to ~/.bashrc',
    'source <(kbatch completion zsh)       # add to ~/.zshrc',
    'kbatch completion fish > ~/.config/fish/completions/kbatch.fish',
  ],
  async run(ctx) {
    const shell = ctx.args.positionals[0]!;
    const script = scripts[shell];
    if (!script) throw new UsageError(`no completion for "${shell}"`, `choose one of ${Object.keys(scripts).join(', ')}`);
    ctx.out(script);
    return 0;
  },
};

function optionWords(options: OptionSpec[]): string[] {
  return options.flatMap((o) => [`--${o.name}`, ...(o.aliases ?? []).map((a) => `--${a}`)]);
}

/** Candidates for the last word, given the words before it. */
export function completions(root: Group, words: string[]): string[] {
  const current = words[words.length - 1] ?? '';
  let node: Command | Group = root;
  let options: OptionSpec[] = globalOptions;
  for (const word of words.slice(0, -1)) {
    if (node.kind !== 'group' || word.startsWith('-')) continue;
    const child: Command | Group | undefined = node.children.find((c) => c.name === word || c.aliases?.includes(word));
    if (!child) return [];
    node = child;
    if (child.kind === 'command') options = [...child.options, ...globalOptions];
  }
  const previous = words[words.length - 2];
  const valueOf = previous?.startsWith('-')
    ? options.find((o) => `--${o.name}` === previous || `-${o.short}` === previous || o.aliases?.some((a) => `--${a}` === previous))
    : undefined;
  if (valueOf?.type === 'string') {
    const formats =
      valueOf.name === 'output'
        ? /output format: ([^(]+)/
            .exec(valueOf.help)?.[1]
            ?.split(',')
            .map((f) => f.trim())
        : undefined;
    return (formats ?? []).filter((f) => f.startsWith(current));
  }
  let candidates: string[];
  if (current.startsWith('-')) candidates = optionWords(options);
  else if (node.kind === 'group') candidates = node.children.map((c) => c.name);
  else if (node.name === 'completion') candidates = Object.keys(scripts);
  else candidates = [];
  return candidates.filter((c) => c.startsWith(current));
}
