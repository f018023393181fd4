/**
 * Wire types: what the SDK sends to and reads from the API, derived from the
 * types generated from the server's OpenAPI document (`api.gen.ts`, made by
 * `npm run gen:api` from openapi/openapi.json). A field renamed or removed in
 * the server's schemas, a new required request field, or an operation moved
 * fails `npm run typecheck` (and `npm run build`) once the file is regenerated,
 * and test/unit/api-gen.test.ts fails while it is not.
 * Types only: nothing here reaches the bundles.
 */
import type { components, paths } from './api.gen';

type Schemas = components['schemas'];
/** JSON body of an operation's success response. */
type Ok<Op> = Op extends { responses: infer R } ? Json<R[keyof R & (200 | 201)]> : never;
/** JSON body of an operation's request. */
type Body<Op> = Op extends { requestBody: infer B } ? Json<B> : never;
type Json<T> = T extends { content: { 'application/json': infer J } } ? J : never;

/** `GET /v1/sites/{site_key}/config` response body. */
export type SiteConfig = Ok<paths['/v1/sites/{site_key}/config']['get']>;

/** A purpose of the site config; its `consent_model` is already the effective one for the region. */
export type Purpose = SiteConfig['purposes'][number];

/** A policy revision in force (`revision_date`: `YYYY-MM-DD`, identifies it). */
export type PolicyRevision = SiteConfig['policies'][number];

/** Effective consent model of a purpose in the visitor's region. */
export type ConsentModel = Purpose['consent_model'];

/** `GET /v1/sites/{site_key}/visitors/{visitor_id}/consents` response body. */
export type VisitorConsents = Ok<paths['/v1/sites/{site_key}/visitors/{visitor_id}/consents']['get']>;

/** One purpose of a visitor's consent state on the server. */
export type ServerPurposeState = VisitorConsents['purposes'][string];

/** A purpose's status as the server stores it. */
export type ServerStatus = ServerPurposeState['status'];

/**
 * `POST /v1/sites/{site_key}/consents` request body, plus `identity_token`,
 * which the server's schema does not have yet: the server refuses it (400)
 * until identity linking ships, and `identify()` reports that.
 */
export type ConsentWrite = Body<paths['/v1/sites/{site_key}/consents']['post']> & { identity_token?: string };

/** Where a decision was made; sent as `source` with each write. */
export type ConsentSource = ConsentWrite['source'];

/** `POST /v1/sites/{site_key}/consents` success response body. */
export type ConsentWriteResult = Ok<paths['/v1/sites/{site_key}/consents']['post']>;

/** An RFC 9457 problem details object: the body of every error response. */
export type Problem = Schemas['Problem'];

/** `true` when A and B are the same type. */
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** `false` when T is never: the operation, or its JSON body, is not where the types above look. */
type Found<T> = [T] extends [never] ? false : true;
type Assert<T extends true> = T;

/**
 * Compile-time checks against the spec, beyond the use of the types above
 * (types only). A failing one reads "Type 'false' does not satisfy the constraint 'true'".
 */
export type ApiChecks = [
  Assert<Found<SiteConfig>>,
  Assert<Found<VisitorConsents>>,
  Assert<Found<ConsentWrite>>,
  Assert<Found<ConsentWriteResult>>,
  // `allowed` (core.ts) and the cookie's model lists know exactly these: a new model must be handled there first
  Assert<Same<ConsentModel, 'opt_in' | 'opt_out' | 'notice_only'>>,
];
