/**
 * `WWW-Authenticate` parsing (RFC 9110 §11.6.1): several challenges in one header, quoted values that
 * hold commas and escaped quotes, case-insensitive schemes and parameter names, token68 credentials.
 */

export interface AuthChallenge {
  /** Lower-cased scheme: 'bearer', 'basic', … */
  scheme: string;
  /** Parameters with lower-cased names ('realm', 'service', 'scope', 'error'). */
  params: Record<string, string>;
  /** A token68 given instead of parameters (`Negotiate abc==`). */
  token68?: string;
}

const TOKEN_CHAR = /[!#$%&'*+.^_`|~0-9A-Za-z-]/;
const TOKEN68_CHAR = /[A-Za-z0-9\-._~+/]/;

/**
 * Every challenge in the header, in order. Garbage is skipped rather than thrown on. One pass: every
 * character is looked at a bounded number of times, so the work is linear in the header's length
 * (`probe`, when given, counts the looks, for tests).
 */
export function parseAuthChallenges(
  header: string | null | undefined,
  probe?: { steps: number },
): AuthChallenge[] {
  const challenges: AuthChallenge[] = [];
  if (!header) return challenges;
  const s = header;
  let i = 0;
  const look = (): void => {
    if (probe) probe.steps++;
  };

  const skipSpaces = (): void => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) {
      look();
      i++;
    }
  };
  const readToken = (): string => {
    const start = i;
    while (i < s.length && TOKEN_CHAR.test(s[i]!)) {
      look();
      i++;
    }
    return s.slice(start, i);
  };
  const readQuoted = (): string => {
    // s[i] is the opening quote
    i++;
    const parts: string[] = [];
    while (i < s.length && s[i] !== '"') {
      look();
      if (s[i] === '\\' && i + 1 < s.length) i++;
      parts.push(s[i]!);
      i++;
    }
    i++; // closing quote (or end of input for an unterminated string)
    return parts.join('');
  };
  /** The end of a token68 starting at i (a run of its characters, then '='s, then only spaces before ',' or the end), or -1. */
  // Where the last failed token68 run ended: a start inside that run ends it at the same place and
  // fails the same way, so it is not scanned again (which would make 'a/a/a/…' quadratic).
  let failedRunEnd = -1;
  const token68End = (): number => {
    if (i < failedRunEnd) return -1;
    let j = i;
    while (j < s.length && TOKEN68_CHAR.test(s[j]!)) {
      look();
      j++;
    }
    if (j === i) return -1;
    const runEnd = j;
    while (j < s.length && s[j] === '=') {
      look();
      j++;
    }
    let k = j;
    while (k < s.length && (s[k] === ' ' || s[k] === '\t')) {
      look();
      k++;
    }
    if (k === s.length || s[k] === ',') return j;
    failedRunEnd = runEnd;
    return -1;
  };

  while (i < s.length) {
    look();
    skipSpaces();
    if (s[i] === ',') {
      i++;
      continue;
    }
    const scheme = readToken();
    if (scheme === '') {
      i++; // not a token character: skip it
      continue;
    }
    const challenge: AuthChallenge = { scheme: scheme.toLowerCase(), params: {} };
    challenges.push(challenge);
    skipSpaces();

    // A token68 stands alone: it is followed by the end, or by a comma before the next challenge.
    const end = token68End();
    if (end !== -1) {
      challenge.token68 = s.slice(i, end);
      i = end;
      continue;
    }

    // auth-param list: name = (token | quoted-string), separated by commas.
    for (;;) {
      look();
      skipSpaces();
      const mark = i;
      const name = readToken();
      skipSpaces();
      if (name === '' || s[i] !== '=') {
        // Not a parameter: the start of the next challenge (or junk). Let the outer loop take it.
        i = mark;
        break;
      }
      i++; // '='
      skipSpaces();
      let value: string;
      if (s[i] === '"') {
        value = readQuoted();
      } else {
        const start = i;
        while (i < s.length && s[i] !== ',' && s[i] !== ' ' && s[i] !== '\t') {
          look();
          i++;
        }
        value = s.slice(start, i);
      }
      challenge.params[name.toLowerCase()] = value;
      skipSpaces();
      if (s[i] === ',') {
        i++;
        continue;
      }
      break;
    }
  }
  return challenges;
}

/** The first challenge of the given scheme (case-insensitive), if any. */
export function findChallenge(challenges: AuthChallenge[], scheme: string): AuthChallenge | undefined {
  const wanted = scheme.toLowerCase();
  return challenges.find((c) => c.scheme === wanted);
}
