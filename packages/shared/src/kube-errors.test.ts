import { ApiException } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { apiStatusCode, errorFields } from './kube-errors.ts';
import { createLogger, type Logger } from './logging.ts';

describe('errorFields', () => {
  it('gives the API Status message of an ApiException, not its body and headers dump', () => {
    const err = new ApiException(
      409,
      'Conflict',
      JSON.stringify({
        kind: 'Status',
        message: 'Operation cannot be fulfilled: the object has been modified',
      }),
      { 'audit-id': 'x' },
    );
    expect(errorFields(err)).toEqual({
      error: 'Operation cannot be fulfilled: the object has been modified',
      code: 409,
    });
  });

  it('falls back to the status code when the body says nothing', () => {
    expect(errorFields(new ApiException(503, 'Unavailable', '', {}))).toEqual({
      error: 'HTTP 503',
      code: 503,
    });
  });

  it('reads watch errors (statusCode), system errors (string code) and fetch causes', () => {
    expect(errorFields(Object.assign(new Error('Gone'), { statusCode: 410 }))).toEqual({
      error: 'Gone',
      code: 410,
    });
    expect(errorFields(Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }))).toEqual({
      error: 'connect',
      code: 'ECONNREFUSED',
    });
    expect(
      errorFields(new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED 127.0.0.1:1') })),
    ).toEqual({ error: 'fetch failed', cause: 'connect ECONNREFUSED 127.0.0.1:1' });
    expect(errorFields('plain')).toEqual({ error: 'plain' });
  });

  it('does not mistake a DOMException code for an HTTP status', () => {
    const abort = new DOMException('This operation was aborted', 'AbortError');
    expect(apiStatusCode(abort)).toBeUndefined();
    expect(errorFields(abort)).toEqual({ error: 'This operation was aborted' });
  });
});

it('accepts the project logger', () => {
  const logger: Logger = createLogger({ component: 'test', level: 'error' });
  expect(typeof logger.info).toBe('function');
});
