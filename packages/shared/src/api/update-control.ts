/**
 * The WatchedImage fields that control when and whether an update lands: update windows, the
 * minimum age of a digest, and automatic rollback. Schemas only; the controller decides with them.
 */
import { type Static, Type } from '@sinclair/typebox';
import { celRule, celString } from './cel.ts';
import { DURATION_PATTERN } from './duration.ts';
import { StringEnum } from './meta.ts';

/** Days of the week as update windows name them, Monday first. */
export const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

export const ROLLBACK_POLICY = {
  /** A failed update stays failed; the workloads keep the new image. */
  Never: 'Never',
  /** A failed rollout puts every patched workload back on its previous image. */
  OnFailure: 'OnFailure',
} as const;
export type RollbackPolicy = (typeof ROLLBACK_POLICY)[keyof typeof ROLLBACK_POLICY];

const CLOCK_TIME = '^([01][0-9]|2[0-3]):[0-5][0-9]$';
const END_TIME = '^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$';
/** An IANA time zone name such as Europe/Berlin; whether the database knows it is the controller's to say. */
const TIME_ZONE_PATTERN = '^[A-Za-z][A-Za-z0-9_+\\-]*(/[A-Za-z0-9_+\\-]+)*$';
const clockTime = new RegExp(CLOCK_TIME);
const endTime = new RegExp(END_TIME);
const timeZone = new RegExp(TIME_ZONE_PATTERN);

function ClockTime(description: string, pattern: string, regExp: RegExp, message: string) {
  return Type.String({
    description,
    maxLength: 5,
    // A CEL rule rather than `pattern`, so the error says what a time looks like instead of printing
    // the regular expression.
    'x-kubernetes-validations': [
      celRule<string>(`self.matches(${celString(pattern)})`, message, (self) => regExp.test(self)),
    ],
  });
}

export const UpdateWindow = Type.Object(
  {
    days: Type.Optional(
      Type.Array(
        StringEnum(WEEKDAYS, { description: 'A day of the week: Mon, Tue, Wed, Thu, Fri, Sat or Sun.' }),
        {
          description:
            'Days the window opens on, in its time zone. A window that crosses midnight opens on these days and closes the day after. Every day when absent.',
          minItems: 1,
          maxItems: 7,
          'x-kubernetes-list-type': 'set',
        },
      ),
    ),
    start: ClockTime(
      'Time of day the window opens, HH:MM on a 24-hour clock (00:00 to 23:59), in timeZone. When the clock springs forward over it, the window opens at the jump.',
      CLOCK_TIME,
      clockTime,
      'must be a time of day HH:MM from 00:00 to 23:59, e.g. 22:00',
    ),
    end: ClockTime(
      'Time of day the window closes (exclusive), HH:MM from 00:00 to 24:00, in timeZone. Not after start means the window closes the next day (22:00 to 06:00 is overnight; equal to start, a whole day).',
      END_TIME,
      endTime,
      'must be a time of day HH:MM from 00:00 to 24:00, e.g. 06:00',
    ),
    timeZone: Type.Optional(
      Type.String({
        description:
          'IANA time zone the times and days are read in, e.g. Europe/Berlin or America/New_York. Defaults to UTC.',
        default: 'UTC',
        maxLength: 64,
        'x-kubernetes-validations': [
          celRule<string>(
            `self.matches(${celString(TIME_ZONE_PATTERN)})`,
            'must be an IANA time zone name such as Europe/Berlin or UTC (not an offset such as +01:00)',
            (self) => timeZone.test(self),
          ),
        ],
      }),
    ),
  },
  { description: 'A time of the week during which updates may start.' },
);
export type UpdateWindow = Static<typeof UpdateWindow>;

export const UpdateWindows = Type.Array(UpdateWindow, {
  description:
    'When updates may start. An ImageUpdate detected outside every window waits in phase Scheduled until the next one opens (one already applying finishes its rollout). When absent, updates start at once.',
  maxItems: 32,
});

export const MinimumAge = Type.String({
  description:
    'How long a new digest must stand behind the tag before it is applied, as a Go duration (30m, 1h, 24h), counted from when the poller first saw it. A tag that moves again within that time rolls out once, to the last digest. Until then the ImageUpdate waits in phase Scheduled. No minimum when absent.',
  pattern: DURATION_PATTERN,
  maxLength: 32,
});

export const Rollback = StringEnum(Object.values(ROLLBACK_POLICY), {
  description: `What to do when an applied update's rollout fails (a Deployment's progress deadline exceeded, or the controller's rollout timeout). Never leaves the workloads on the new image; OnFailure puts every workload the update patched back on its previous image, pinned to its digest, records phase RolledBack and refuses that digest until the tag moves on. Defaults to ${ROLLBACK_POLICY.Never}.`,
  default: ROLLBACK_POLICY.Never,
});
