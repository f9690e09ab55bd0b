import type { ImageUpdate } from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import {
  currentEvent,
  type Endpoint,
  factsOf,
  messageBody,
  NOTIFICATION_MAX_AGE_MS,
  NotificationConfigError,
  parseEndpoints,
  pendingDeliveries,
  summaryLine,
} from './plan.ts';

const SLACK_URL = 'https://hooks.slack.com/services/T0000/B0000/abcdefghijklmnop';
const NOW = new Date('2026-12-01T08:00:00Z');
const FROM = `sha256:${'a'.repeat(64)}`;
const TO = `sha256:${'b'.repeat(64)}`;

function update(phase: string, status: Partial<NonNullable<ImageUpdate['status']>> = {}): ImageUpdate {
  return {
    apiVersion: 'kubewatcher.io/v1alpha1',
    kind: 'ImageUpdate',
    metadata: { name: 'web-bbbbbbbbbbbb', namespace: 'apps', creationTimestamp: '2026-12-01T07:59:00Z' },
    spec: { watchedImage: 'web', image: 'nginx:1.27', fromDigest: FROM, toDigest: TO },
    status: { phase, ...status },
  } as ImageUpdate;
}

const all: Endpoint = {
  name: 'all',
  type: 'slack',
  url: SLACK_URL,
  events: ['AwaitingApproval', 'Applied', 'Succeeded', 'Failed', 'RolledBack'],
};
const failures: Endpoint = {
  name: 'pager',
  type: 'webhook',
  url: 'https://pager.example/hook',
  events: ['Failed', 'RolledBack'],
};
const team: Endpoint = { ...all, name: 'team-b', namespaces: ['team-b'] };

describe('parseEndpoints', () => {
  it('reads each type, defaulting to every event', () => {
    const text = `
endpoints:
  - { name: chat, type: slack, url: "${SLACK_URL}" }
  - { name: ops, type: teams, url: "https://acme.webhook.office.com/x", events: [Failed, RolledBack] }
  - { name: dev, type: discord, url: "https://discord.com/api/webhooks/1/t", namespaces: [apps] }
  - { name: audit, type: webhook, url: "https://audit.example/in", headers: { Authorization: "Bearer s3cret" } }
`;
    const endpoints = parseEndpoints(text);
    expect(endpoints.map((e) => [e.name, e.type, e.events.length])).toEqual([
      ['chat', 'slack', 5],
      ['ops', 'teams', 2],
      ['dev', 'discord', 5],
      ['audit', 'webhook', 5],
    ]);
    expect(endpoints[2]!.namespaces).toEqual(['apps']);
    expect(endpoints[3]!.headers).toEqual({ Authorization: 'Bearer s3cret' });
  });

  const bad: [string, string, string][] = [
    ['no list', 'endpoints: 3', 'must hold "endpoints:", a list'],
    [
      'unknown type',
      `endpoints: [{ name: a, type: email, url: "${SLACK_URL}" }]`,
      'endpoints[0].type "email" must be one of',
    ],
    [
      'unknown event',
      `endpoints: [{ name: a, type: slack, url: "${SLACK_URL}", events: [Done] }]`,
      'endpoints[0].events: "Done" is not one of',
    ],
    [
      'not a URL',
      'endpoints: [{ name: a, type: slack, url: "hooks.slack.com/services/SECRET" }]',
      'endpoints[0].url (a) is not a URL',
    ],
    [
      'headers on slack',
      `endpoints: [{ name: a, type: slack, url: "${SLACK_URL}", headers: { X: y } }]`,
      'only type webhook takes headers',
    ],
    [
      'twice',
      `endpoints: [{ name: a, type: slack, url: "${SLACK_URL}" }, { name: a, type: slack, url: "${SLACK_URL}" }]`,
      'endpoints[1].name "a" is used twice',
    ],
  ];
  it.each(bad)('refuses %s, without repeating the URL', (_, text, message) => {
    expect(() => parseEndpoints(text)).toThrow(NotificationConfigError);
    expect(() => parseEndpoints(text)).toThrow(message);
    try {
      parseEndpoints(text);
    } catch (err) {
      expect((err as Error).message).not.toMatch(/SECRET|services\/T0000/);
    }
  });
});

describe('currentEvent', () => {
  it.each([
    ['Pending', undefined],
    ['AwaitingApproval', 'AwaitingApproval'],
    ['Applying', 'Applied'],
    ['RollingOut', 'Applied'],
    ['Succeeded', 'Succeeded'],
    ['Failed', 'Failed'],
    ['RolledBack', 'RolledBack'],
    ['Superseded', undefined],
    ['Observed', undefined],
  ])('%s → %s', (phase, event) => {
    expect(currentEvent(update(phase))?.event).toBe(event);
  });
});

describe('pendingDeliveries', () => {
  it('owes the current event to the endpoints that want it, in their namespaces', () => {
    const p = pendingDeliveries(
      update('Failed', { completedTime: '2026-12-01T07:59:30Z' }),
      [all, failures, team],
      NOW,
    );
    expect(p?.event).toBe('Failed');
    expect(p?.endpoints.map((e) => e.name)).toEqual(['all', 'pager']);
  });

  it('owes nothing already recorded', () => {
    const u = update('Failed', {
      completedTime: '2026-12-01T07:59:30Z',
      notifications: [{ endpoint: 'all', event: 'Failed', time: '2026-12-01T07:59:31Z' }],
    });
    expect(pendingDeliveries(u, [all, failures], NOW)?.endpoints.map((e) => e.name)).toEqual(['pager']);
    expect(pendingDeliveries(u, [all], NOW)).toBeUndefined();
  });

  it('an earlier event sent does not count for the next one', () => {
    const u = update('Succeeded', {
      completedTime: '2026-12-01T07:59:30Z',
      notifications: [{ endpoint: 'all', event: 'Applied', time: '2026-12-01T07:59:10Z' }],
    });
    expect(pendingDeliveries(u, [all], NOW)?.event).toBe('Succeeded');
  });

  it('sends nothing about history older than the maximum age', () => {
    const old = new Date(NOW.getTime() - NOTIFICATION_MAX_AGE_MS - 1000).toISOString();
    expect(pendingDeliveries(update('Succeeded', { completedTime: old }), [all], NOW)).toBeUndefined();
  });
});

describe('messageBody', () => {
  const facts = factsOf(
    update('AwaitingApproval', {
      progress: '0/1',
      workloads: [{ kind: 'Deployment', name: 'web', container: 'nginx', state: 'Pending' }],
    }),
    'AwaitingApproval',
  );

  it('says what, where and how to approve', () => {
    expect(summaryLine(facts)).toBe(
      'nginx:1.27 aaaaaaaaaaaa → bbbbbbbbbbbb in apps is awaiting approval (0/1 workloads): ImageUpdate web-bbbbbbbbbbbb',
    );
    expect((messageBody('slack', facts) as { text: string }).text).toContain(
      'kubectl kubewatcher approve web-bbbbbbbbbbbb -n apps',
    );
  });

  it('takes each endpoint type its own shape', () => {
    expect(messageBody('discord', facts)).toMatchObject({
      content: expect.stringContaining('awaiting approval'),
      allowed_mentions: { parse: [] },
    });
    const teams = messageBody('teams', facts) as {
      attachments: { contentType: string; content: { type: string; body: unknown[] } }[];
    };
    expect(teams.attachments[0]!.contentType).toBe('application/vnd.microsoft.card.adaptive');
    expect(teams.attachments[0]!.content.type).toBe('AdaptiveCard');
    expect(messageBody('webhook', facts)).toMatchObject({
      event: 'AwaitingApproval',
      namespace: 'apps',
      imageUpdate: 'web-bbbbbbbbbbbb',
      toDigest: TO,
      workloads: [{ kind: 'Deployment', name: 'web', container: 'nginx', state: 'Pending' }],
    });
  });

  it('keeps Discord under its 2,000 characters', () => {
    const many = factsOf(
      update('Failed', {
        workloads: Array.from({ length: 10 }, (_, i) => ({
          kind: 'Deployment' as const,
          name: `w${i}`,
          container: 'c',
          state: 'Failed' as const,
          message: 'x'.repeat(400),
        })),
      }),
      'Failed',
    );
    expect((messageBody('discord', many) as { content: string }).content.length).toBeLessThanOrEqual(2000);
  });
});
