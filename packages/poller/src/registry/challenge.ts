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
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*/;

/** Every challenge in the header, in order. Garbage is skipped rather than thrown on. */
export function parseAuthChallenges(header: string | null | undefined): AuthChallenge[] {
  const challenges: AuthChallenge[] = [];
  if (!header) return challenges;
  const s = header;
  let i = 0;

  const skipSpaces = (): void => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < s.length && TOKEN_CHAR.test(s[i]!)) i++;
    return s.slice(start, i);
  };
  const readQuoted = (): string => {
    // s[i] is the opening quote
    i++;
    let out = '';
    while (i < s.length && s[i] !== '"') {
      if (s[i] === '\\' && i + 1 < s.length) i++;
      out += s[i];
      i++;
    }
    i++; // closing quote (or end of input for an unterminated string)
    return out;
  };

  while (i < s.length) {
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
    const t68 = TOKEN68.exec(s.slice(i));
    if (t68 && /^[ \t]*(,|$)/.test(s.slice(i + t68[0].length))) {
      challenge.token68 = t68[0];
      i += t68[0].length;
      continue;
    }

    // auth-param list: name = (token | quoted-string), separated by commas.
    for (;;) {
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
        while (i < s.length && s[i] !== ',' && s[i] !== ' ' && s[i] !== '\t') i++;
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
