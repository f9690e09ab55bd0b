/**
 * Notifications from a running controller against the real local control plane, to endpoints that
 * are local HTTP servers on loopback which fail on purpose: retries until the endpoint answers, the
 * record on the ImageUpdate, nothing sent twice across a restart, and no URL in any log line.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '@kubewatcher/shared';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  clientsFor,
  createImageUpdate,
  createNamespace,
  createWatchedImage,
  deleteNamespace,
  deployment,
  getImageUpdate,
  installCrds,
  testDigest,
  until,
  waitForPhase,
} from '../../../test/support/controller-fixtures.ts';
import { type RunningController, startController } from './controller-harness.ts';

const cluster = inject('localCluster');
const clients = clientsFor(cluster);
const WEB = '127.0.0.1:5999/acme/web:stable';
const SECRET_PATH = 'T000SECRET/B000/hook-secret-token';

/** An endpoint that answers `status()` to each POST and keeps what it was sent. */
interface FlakyEndpoint {
  url: string;
  received: { path: string; body: Record<string, unknown> }[];
  answered: number[];
  status: () => number;
  close(): Promise<void>;
}

async function flakyEndpoint(status: () => number): Promise<FlakyEndpoint> {
  const endpoint = { received: [], answered: [], status } as unknown as FlakyEndpoint;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const code = endpoint.status();
      endpoint.answered.push(code);
      if (code === 200)
        endpoint.received.push({ path: req.url ?? '', body: JSON.parse(Buffer.concat(chunks).toString()) });
      res.writeHead(code).end(code === 200 ? 'ok' : 'try later');
    });
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  endpoint.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  endpoint.close = () => new Promise((resolve) => server.close(() => resolve()));
  return endpoint;
}

/** Keeps every log line, to check none holds a URL. */
function recordingLogger(lines: string[]): Logger {
  const keep = (level: string) => (message: string, meta?: Record<string, unknown>) => {
    lines.push(`${level} ${message} ${JSON.stringify(meta ?? {})}`);
  };
  return { error: keep('error'), warn: keep('warn'), info: keep('info'), debug: keep('debug') };
}

let ns: string;
let dir: string;
let chat: FlakyEndpoint;
let audit: FlakyEndpoint;
let chatFailures = 2;
let auditUp = false;
const lines: string[] = [];
const controllers: RunningController[] = [];

beforeAll(async () => {
  await installCrds(cluster);
  ns = await createNamespace(clients, 'notify');
  chat = await flakyEndpoint(() => (chatFailures-- > 0 ? 500 : 200));
  audit = await flakyEndpoint(() => (auditUp ? 200 : 503));
  dir = mkdtempSync(join(tmpdir(), 'kubewatcher-notify-'));
  writeFileSync(
    join(dir, 'notifications.yaml'),
    [
      'endpoints:',
      `  - { name: chat, type: slack, url: "${chat.url}/services/${SECRET_PATH}", events: [AwaitingApproval, Succeeded] }`,
      `  - { name: audit, type: webhook, url: "${audit.url}/in", headers: { Authorization: "Bearer audit-secret" } }`,
      '  - { name: elsewhere, type: discord, url: "http://127.0.0.1:9/x", namespaces: [another] }',
    ].join('\n'),
  );
});

afterAll(async () => {
  for (const c of controllers) await c.stop();
  await chat?.close();
  await audit?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (ns) await deleteNamespace(clients, ns);
});

const start = async () => {
  const c = await startController(clients.kc, {
    namespaces: [ns],
    notificationsFile: join(dir, 'notifications.yaml'),
    logger: recordingLogger(lines),
  });
  controllers.push(c);
  return c;
};

describe('notifications', () => {
  it('retries a failing endpoint until it takes the message, records it, and resends nothing after a restart', async () => {
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('web', { containers: { app: WEB } }),
    });
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB, updatePolicy: 'Manual' });
    const first = await start();
    const iu = await createImageUpdate(clients, wi, testDigest(1));
    await waitForPhase(clients, ns, iu.metadata.name, 'AwaitingApproval');

    // chat fails twice, then takes it: three tries, one message.
    const recorded = await until(
      () => getImageUpdate(clients, ns, iu.metadata.name),
      (u) => (u.status?.notifications ?? []).some((n) => n.endpoint === 'chat'),
      { what: 'the chat notification to be recorded' },
    );
    expect(chat.answered).toEqual([500, 500, 200]);
    expect(chat.received).toHaveLength(1);
    expect(chat.received[0]!.path).toBe(`/services/${SECRET_PATH}`);
    expect(String(chat.received[0]!.body.text)).toMatch(
      new RegExp(`is awaiting approval.*: ImageUpdate ${iu.metadata.name}`),
    );
    expect(recorded.status?.notifications?.map((n) => [n.endpoint, n.event])).toEqual([
      ['chat', 'AwaitingApproval'],
    ]);
    expect(recorded.status?.phase).toBe('AwaitingApproval');

    // audit is down: tried again and again, never recorded.
    await until(
      () => audit.answered.length,
      (n) => n >= 2,
      { what: 'audit to be retried' },
    );
    expect(
      await first.metric('kubewatcher_notifications_total', { endpoint: 'audit', result: 'failed' }),
    ).toBeGreaterThanOrEqual(2);
    await first.stop();
    const beforeRestart = await getImageUpdate(clients, ns, iu.metadata.name);
    expect(beforeRestart.status?.notifications?.map((n) => n.endpoint)).toEqual(['chat']);

    // A new controller owes audit its message, and chat nothing.
    auditUp = true;
    await start();
    const after = await until(
      () => getImageUpdate(clients, ns, iu.metadata.name),
      (u) => (u.status?.notifications ?? []).some((n) => n.endpoint === 'audit'),
      { what: 'the audit notification to be recorded after the restart' },
    );
    expect(after.status?.notifications?.map((n) => [n.endpoint, n.event]).sort()).toEqual([
      ['audit', 'AwaitingApproval'],
      ['chat', 'AwaitingApproval'],
    ]);
    expect(audit.received).toHaveLength(1);
    expect(audit.received[0]!.body).toMatchObject({
      event: 'AwaitingApproval',
      namespace: ns,
      imageUpdate: iu.metadata.name,
      watchedImage: 'web',
      image: WEB,
    });
    expect(chat.received).toHaveLength(1);

    // The recording did not disturb the reconciler: the update is still awaiting, and its other
    // status fields are the controller's.
    expect(after.status?.phase).toBe('AwaitingApproval');
    expect(after.status?.conditions?.find((c) => c.type === 'Approved')?.reason).toBe('AwaitingApproval');
  });

  it('never logs a URL, a path secret or a header', () => {
    expect(lines.some((l) => l.includes('notification not delivered'))).toBe(true);
    for (const line of lines) {
      expect(line).not.toContain(SECRET_PATH);
      expect(line).not.toContain(chat.url);
      expect(line).not.toContain(audit.url);
      expect(line).not.toContain('audit-secret');
    }
  });
});
