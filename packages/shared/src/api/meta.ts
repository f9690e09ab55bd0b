/**
 * Kubernetes building blocks the Kubewatcher kinds share, as TypeBox schemas: object metadata,
 * metav1.Condition, metav1.LabelSelector, LocalObjectReference, the name and time grammars
 * Kubernetes uses, and the shape of a CRD printer column. Each builder takes the description, because the same shape means different
 * things in different fields and `kubectl explain` should say which.
 */
import {
  FormatRegistry,
  type SchemaOptions,
  type Static,
  type TLiteral,
  type TSchema,
  type TUnion,
  Type,
} from '@sinclair/typebox';
import { API_VERSION } from '../constants.ts';
import { type CelRule, celRule, celString } from './cel.ts';

/** RFC 1123 label: container names, most short names. */
export const DNS1123_LABEL_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
/** RFC 1123 subdomain: object names (Secrets, WatchedImages, ImageUpdates). */
export const DNS1123_SUBDOMAIN_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
/** Label key: optional DNS subdomain prefix and `/`, then a name of alphanumerics, `-`, `_`, `.`. */
const dnsLabelRegExp = new RegExp(DNS1123_LABEL_PATTERN);
const dnsSubdomainRegExp = new RegExp(DNS1123_SUBDOMAIN_PATTERN);

/** A DNS label (RFC 1123), at most 63 characters: a namespace's or a Service's name. */
export function isDnsLabel(name: string): boolean {
  return name.length <= 63 && dnsLabelRegExp.test(name);
}

/** A DNS subdomain (RFC 1123), at most 253 characters: most objects' names (a ConfigMap's, a Secret's). */
export function isDnsSubdomain(name: string): boolean {
  return name.length <= 253 && dnsSubdomainRegExp.test(name);
}

export const LABEL_KEY_PATTERN =
  '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$';
/** Label value: empty, or alphanumerics with `-`, `_`, `.` inside. */
export const LABEL_VALUE_PATTERN = '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$';
/** metav1.Condition type, as in k8s.io/apimachinery. */
export const CONDITION_TYPE_PATTERN =
  '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$';
/** metav1.Condition reason: CamelCase, as in k8s.io/apimachinery. */
export const CONDITION_REASON_PATTERN = '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$';

// RFC 3339 date-time, the `date-time` format the API server checks (metav1.Time writes seconds and `Z`).
const dateTimeRegExp =
  /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$/;

/** True when `value` is an RFC 3339 date-time such as `2025-01-31T12:00:00Z`. */
export function isDateTime(value: string): boolean {
  return dateTimeRegExp.test(value) && !Number.isNaN(Date.parse(value));
}

// TypeBox refuses unknown formats; register the ones the API server knows and these schemas use.
if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', isDateTime);

/** A string enum; the CRD converter writes it as `type: string` + `enum`. */
export function StringEnum<const T extends readonly string[]>(
  values: T,
  options: SchemaOptions = {},
): TUnion<{ -readonly [K in keyof T]: TLiteral<T[K]> }> {
  return Type.Union(
    values.map((value) => Type.Literal(value)),
    options,
  ) as unknown as TUnion<{ -readonly [K in keyof T]: TLiteral<T[K]> }>;
}

/** An RFC 3339 timestamp. */
export function DateTime(description: string) {
  return Type.String({ description, format: 'date-time' });
}

/** The name of an object in the same namespace. */
export function ObjectName(description: string, rules: readonly CelRule[] = []) {
  return Type.String({
    description,
    pattern: DNS1123_SUBDOMAIN_PATTERN,
    minLength: 1,
    maxLength: 253,
    ...(rules.length > 0 ? { 'x-kubernetes-validations': [...rules] } : {}),
  });
}

/** Observed generation (int64). */
export function ObservedGeneration(description: string) {
  return Type.Integer({ description, format: 'int64', minimum: 0 });
}

/**
 * The parts of ObjectMeta Kubewatcher reads or writes. Only for TypeScript and client-side checks:
 * the API server owns metadata, so the CRD declares `metadata` as a plain object.
 */
export const ObjectMeta = Type.Object(
  {
    name: Type.String({ description: 'Name, unique within the namespace.' }),
    generateName: Type.Optional(Type.String({ description: 'Prefix for a server-generated name.' })),
    namespace: Type.Optional(Type.String({ description: 'Namespace of the object.' })),
    uid: Type.Optional(Type.String({ description: 'Unique identifier, set by the server.' })),
    resourceVersion: Type.Optional(Type.String({ description: 'Version for optimistic concurrency.' })),
    generation: Type.Optional(Type.Integer({ description: 'Generation of the desired state.' })),
    creationTimestamp: Type.Optional(DateTime('When the object was created.')),
    deletionTimestamp: Type.Optional(DateTime('When the object will be deleted.')),
    labels: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'Labels.' })),
    annotations: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'Annotations.' })),
    ownerReferences: Type.Optional(
      Type.Array(
        Type.Object({
          apiVersion: Type.String({ description: 'API version of the owner.' }),
          kind: Type.String({ description: 'Kind of the owner.' }),
          name: Type.String({ description: 'Name of the owner.' }),
          uid: Type.String({ description: 'UID of the owner.' }),
          controller: Type.Optional(Type.Boolean({ description: 'True for the managing controller.' })),
          blockOwnerDeletion: Type.Optional(Type.Boolean({ description: 'Foreground deletion waits.' })),
        }),
        { description: 'Objects this object depends on; garbage collected with them.' },
      ),
    ),
    finalizers: Type.Optional(Type.Array(Type.String(), { description: 'Finalizers.' })),
  },
  { description: 'Standard object metadata.' },
);
export type ObjectMeta = Static<typeof ObjectMeta>;

/** A whole object of one of the Kubewatcher kinds: apiVersion, kind, metadata, the kind's spec and status. */
export function KubewatcherObject<K extends string, S extends TSchema, St extends TSchema>(
  kind: K,
  spec: S,
  status: St,
  description: string,
) {
  return Type.Object(
    {
      apiVersion: Type.Literal(API_VERSION, { description: 'API version of the object.' }),
      kind: Type.Literal(kind, { description: 'Kind of the object.' }),
      metadata: ObjectMeta,
      spec,
      status: Type.Optional(status),
    },
    { description },
  );
}

export const CONDITION_STATUS = ['True', 'False', 'Unknown'] as const;
export type ConditionStatus = (typeof CONDITION_STATUS)[number];

/** metav1.Condition, field for field. */
export const Condition = Type.Object(
  {
    type: Type.String({
      description: 'Type of condition in CamelCase, e.g. Ready or Resolved.',
      pattern: CONDITION_TYPE_PATTERN,
      maxLength: 316,
    }),
    status: StringEnum(CONDITION_STATUS, { description: 'Status of the condition: True, False or Unknown.' }),
    observedGeneration: Type.Optional(
      ObservedGeneration(
        'metadata.generation the condition was set from; older than the current generation means the condition is out of date.',
      ),
    ),
    lastTransitionTime: DateTime('Last time the condition changed from one status to another.'),
    reason: Type.String({
      description: "Programmatic identifier of the condition's last transition, in CamelCase.",
      pattern: CONDITION_REASON_PATTERN,
      minLength: 1,
      maxLength: 1024,
    }),
    message: Type.String({
      description: 'Human-readable details of the last transition; may be empty.',
      maxLength: 32768,
    }),
  },
  { description: 'One aspect of the current state, in the metav1.Condition shape.' },
);
export type Condition = Static<typeof Condition>;

/** `conditions`: a map-list keyed by `type`, so each writer's server-side apply keeps the others' entries. */
export function Conditions(description: string) {
  return Type.Array(Condition, {
    description,
    maxItems: 16,
    'x-kubernetes-list-type': 'map',
    'x-kubernetes-list-map-keys': ['type'],
  });
}

export const LABEL_SELECTOR_OPERATOR = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;
export type LabelSelectorOperator = (typeof LABEL_SELECTOR_OPERATOR)[number];

const labelKeyRegExp = new RegExp(LABEL_KEY_PATTERN);

const LabelSelectorRequirement = Type.Object(
  {
    key: Type.String({
      description: 'Label key the requirement applies to.',
      pattern: LABEL_KEY_PATTERN,
      minLength: 1,
      maxLength: 317,
    }),
    operator: StringEnum(LABEL_SELECTOR_OPERATOR, {
      description: "How the key's value relates to values: In, NotIn, Exists or DoesNotExist.",
    }),
    values: Type.Optional(
      Type.Array(
        Type.String({ description: 'A label value.', pattern: LABEL_VALUE_PATTERN, maxLength: 63 }),
        {
          description:
            'Label values. Must be non-empty when operator is In or NotIn, and empty when it is Exists or DoesNotExist.',
          maxItems: 64,
          'x-kubernetes-list-type': 'atomic',
        },
      ),
    ),
  },
  {
    description: 'A label requirement: a key, an operator and values.',
    'x-kubernetes-validations': [
      celRule<{ operator: string; values?: string[] }>(
        "!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
        'must not be empty when operator is In or NotIn',
        (self) => !['In', 'NotIn'].includes(self.operator) || (self.values?.length ?? 0) > 0,
        { fieldPath: '.values', reason: 'FieldValueRequired' },
      ),
      celRule<{ operator: string; values?: string[] }>(
        "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",
        'must be empty when operator is Exists or DoesNotExist',
        (self) => !['Exists', 'DoesNotExist'].includes(self.operator) || (self.values?.length ?? 0) === 0,
        { fieldPath: '.values', reason: 'FieldValueForbidden' },
      ),
    ],
  },
);

/** metav1.LabelSelector: matchLabels and matchExpressions are ANDed; an empty selector matches everything. */
export function LabelSelector(description: string) {
  return Type.Object(
    {
      matchLabels: Type.Optional(
        Type.Record(
          Type.String(),
          Type.String({ description: 'A label value.', pattern: LABEL_VALUE_PATTERN, maxLength: 63 }),
          {
            description:
              'Labels that must all be present with these values; each entry is the same as a matchExpressions entry with operator In and that one value.',
            maxProperties: 64,
            'x-kubernetes-validations': [
              celRule<Record<string, string>>(
                `self.all(k, k.size() <= 317 && k.matches(${celString(LABEL_KEY_PATTERN)}))`,
                'keys must be valid label keys, e.g. app or app.kubernetes.io/name',
                (self) => Object.keys(self).every((key) => key.length <= 317 && labelKeyRegExp.test(key)),
              ),
            ],
          },
        ),
      ),
      matchExpressions: Type.Optional(
        Type.Array(LabelSelectorRequirement, {
          description: 'Label requirements that must all hold.',
          maxItems: 32,
          'x-kubernetes-list-type': 'atomic',
        }),
      ),
    },
    { description, 'x-kubernetes-map-type': 'atomic' },
  );
}
export type LabelSelector = Static<ReturnType<typeof LabelSelector>>;

/** corev1.LocalObjectReference, for a Secret in the same namespace. */
export const LocalObjectReference = Type.Object(
  { name: ObjectName('Name of the Secret in the same namespace.') },
  { description: 'A reference to a Secret in the same namespace.', 'x-kubernetes-map-type': 'atomic' },
);
export type LocalObjectReference = Static<typeof LocalObjectReference>;

/** An entry of a CRD version's additionalPrinterColumns. */
export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  /** 0 for `kubectl get`, 1 for `kubectl get -o wide` only. */
  priority?: number;
  format?: string;
}
