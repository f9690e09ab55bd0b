import { describe, expect, it } from 'vitest';
import { type RolloutWorkload, rolloutState } from './rollout.ts';

type Spec = NonNullable<RolloutWorkload['spec']>;
type Status = NonNullable<RolloutWorkload['status']>;

const workload = (kind: string, spec: Spec, status: Status, generation = 2): RolloutWorkload => ({
  kind,
  metadata: { name: 'w', generation },
  spec,
  status: { observedGeneration: generation, ...status },
});

const DONE = { done: true };
const GOING = { done: false, failed: false };
const FAILED = { done: false, failed: true };

interface Row {
  name: string;
  w: RolloutWorkload;
  state: object;
  message: string;
}

function check({ w, state, message }: Row) {
  const got = rolloutState(w);
  expect(got).toMatchObject(state);
  expect(got.message).toBe(message);
}

describe('rolloutState: any kind', () => {
  it.each<Row>([
    {
      name: 'the workload controller has not seen the new generation',
      w: workload('Deployment', { replicas: 1 }, { observedGeneration: 1, updatedReplicas: 1 }),
      state: GOING,
      message: 'waiting for the Deployment controller to observe generation 2',
    },
    {
      name: 'no status at all',
      w: { kind: 'StatefulSet', metadata: { name: 'w', generation: 1 } },
      state: GOING,
      message: 'waiting for the StatefulSet controller to observe generation 1',
    },
    {
      name: 'a kind it cannot judge',
      w: workload('ReplicaSet', {}, {}),
      state: FAILED,
      message: 'unsupported kind ReplicaSet',
    },
    {
      name: 'a CronJob: nothing rolls out, done once the template is patched (its status has no observedGeneration)',
      w: { kind: 'CronJob', metadata: { name: 'w', generation: 3 }, status: {} },
      state: DONE,
      message: 'CronJob template patched: the next run uses the new image',
    },
  ])('$name', check);
});

describe('rolloutState: Deployment', () => {
  const deployment = (status: Status, replicas = 3) => workload('Deployment', { replicas }, status);
  it.each<Row>([
    {
      name: 'all replicas updated and available',
      w: deployment({ replicas: 3, updatedReplicas: 3, availableReplicas: 3 }),
      state: DONE,
      message: '3 of 3 replicas updated and available',
    },
    {
      name: 'replicas still updating',
      w: deployment({ replicas: 4, updatedReplicas: 1, availableReplicas: 3 }),
      state: GOING,
      message: '1 of 3 replicas updated',
    },
    {
      name: 'old replicas still terminating',
      w: deployment({ replicas: 4, updatedReplicas: 3, availableReplicas: 3 }),
      state: GOING,
      message: '1 old replicas pending termination',
    },
    {
      name: 'updated replicas not available yet',
      w: deployment({ replicas: 3, updatedReplicas: 3, availableReplicas: 2 }),
      state: GOING,
      message: '2 of 3 updated replicas available',
    },
    {
      name: 'spec.replicas unset counts as 1',
      w: workload('Deployment', {}, { replicas: 1, updatedReplicas: 1, availableReplicas: 1 }),
      state: DONE,
      message: '1 of 1 replicas updated and available',
    },
    {
      name: 'ProgressDeadlineExceeded fails, with the controller message',
      w: deployment({
        replicas: 4,
        updatedReplicas: 1,
        conditions: [
          {
            type: 'Progressing',
            status: 'False',
            reason: 'ProgressDeadlineExceeded',
            message: 'ReplicaSet "w-1" has timed out progressing.',
          },
        ],
      }),
      state: FAILED,
      message: 'ProgressDeadlineExceeded: ReplicaSet "w-1" has timed out progressing.',
    },
    {
      name: 'Progressing for another reason does not fail',
      w: deployment({
        replicas: 4,
        updatedReplicas: 1,
        conditions: [{ type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated' }],
      }),
      state: GOING,
      message: '1 of 3 replicas updated',
    },
  ])('$name', check);
});

describe('rolloutState: StatefulSet', () => {
  const rolling = (partition?: number): Spec => ({
    replicas: 3,
    updateStrategy: {
      type: 'RollingUpdate',
      ...(partition === undefined ? {} : { rollingUpdate: { partition } }),
    },
  });
  const statefulSet = (spec: Spec, status: Status) => workload('StatefulSet', spec, status);
  it.each<Row>([
    {
      name: 'every replica ready on the new revision',
      w: statefulSet(rolling(), {
        readyReplicas: 3,
        updatedReplicas: 3,
        currentRevision: 'w-2',
        updateRevision: 'w-2',
      }),
      state: DONE,
      message: '3 replicas updated and ready',
    },
    {
      name: 'replicas not ready',
      w: statefulSet(rolling(), { readyReplicas: 2, currentRevision: 'w-1', updateRevision: 'w-2' }),
      state: GOING,
      message: '2 of 3 replicas ready',
    },
    {
      name: 'ready, but not all on the new revision',
      w: statefulSet(rolling(), {
        readyReplicas: 3,
        updatedReplicas: 1,
        currentRevision: 'w-1',
        updateRevision: 'w-2',
      }),
      state: GOING,
      message: '1 of 3 replicas on the new revision',
    },
    {
      name: 'no updateRevision reported: ready is enough',
      w: statefulSet(rolling(), { readyReplicas: 3 }),
      state: DONE,
      message: '3 replicas updated and ready',
    },
    {
      name: 'partition 0 is a plain rolling update',
      w: statefulSet(rolling(0), {
        readyReplicas: 3,
        updatedReplicas: 2,
        currentRevision: 'w-1',
        updateRevision: 'w-2',
      }),
      state: GOING,
      message: '2 of 3 replicas on the new revision',
    },
    {
      name: 'partition 2: only the replica above the partition must update',
      w: statefulSet(rolling(2), {
        readyReplicas: 3,
        updatedReplicas: 1,
        currentRevision: 'w-1',
        updateRevision: 'w-2',
      }),
      state: DONE,
      message: '1 replicas above partition 2 updated',
    },
    {
      name: 'partition 1: waits for the replicas above it',
      w: statefulSet(rolling(1), {
        readyReplicas: 3,
        updatedReplicas: 1,
        currentRevision: 'w-1',
        updateRevision: 'w-2',
      }),
      state: GOING,
      message: '1 of 2 replicas above the partition updated',
    },
    {
      name: 'partition: replicas not ready come first',
      w: statefulSet(rolling(1), { readyReplicas: 1, updatedReplicas: 2 }),
      state: GOING,
      message: '1 of 3 replicas ready',
    },
    {
      name: 'OnDelete is done at once: pods change only when deleted',
      w: statefulSet(
        { replicas: 3, updateStrategy: { type: 'OnDelete' } },
        { readyReplicas: 0, currentRevision: 'w-1', updateRevision: 'w-2' },
      ),
      state: DONE,
      message: 'updateStrategy OnDelete: pods update when deleted',
    },
  ])('$name', check);
});

describe('rolloutState: DaemonSet', () => {
  const daemonSet = (status: Status, type = 'RollingUpdate') =>
    workload('DaemonSet', { updateStrategy: { type } }, status);
  it.each<Row>([
    {
      name: 'every scheduled pod updated and available',
      w: daemonSet({ desiredNumberScheduled: 4, updatedNumberScheduled: 4, numberAvailable: 4 }),
      state: DONE,
      message: '4 pods updated and available',
    },
    {
      name: 'pods still updating',
      w: daemonSet({ desiredNumberScheduled: 4, updatedNumberScheduled: 2, numberAvailable: 4 }),
      state: GOING,
      message: '2 of 4 pods updated',
    },
    {
      name: 'updated pods not available yet',
      w: daemonSet({ desiredNumberScheduled: 4, updatedNumberScheduled: 4, numberAvailable: 3 }),
      state: GOING,
      message: '3 of 4 updated pods available',
    },
    {
      name: 'no node to schedule on is done',
      w: daemonSet({}),
      state: DONE,
      message: '0 pods updated and available',
    },
    {
      name: 'OnDelete is done at once',
      w: daemonSet({ desiredNumberScheduled: 4, updatedNumberScheduled: 0 }, 'OnDelete'),
      state: DONE,
      message: 'updateStrategy OnDelete: pods update when deleted',
    },
  ])('$name', check);
});
