export interface paths {
    "/v1/sites/{site_key}/config": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * The site's purposes (consent model resolved for `region`) and the policy revisions in force.
         * @description Answers a strong `ETag` over the body (the body stays the same bytes while nothing changes,
         *     within the presentation's hour), and `304 Not Modified` without a body when `If-None-Match`
         *     names it or is `*` (RFC 9110 §13.1.2, weak comparison).
         */
        get: operations["get_site_config"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/sites/{site_key}/visitors/{visitor_id}/consents": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** A visitor's consent state, with `needs_consent` telling the SDK whether to show the banner. */
        get: operations["get_visitor_consents"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/sites/{site_key}/consents": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Records a visitor's choices. One event per changed purpose, in one transaction; a retry
         *     with the same `Idempotency-Key` returns the first response. With `Sec-GPC: 1`, purposes
         *     with `gpc_applies` are denied (source `gpc`) before the choices are applied (11 CCR §7025).
         */
        post: operations["record_visitor_consents"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        /**
         * @description Purpose key → granted (true) or refused (false).
         * @example {
         *       "social_media": false,
         *       "statistics": true
         *     }
         */
        ChoicesSchema: {
            [key: string]: boolean;
        };
        /**
         * @description How silence is read for a purpose.
         * @enum {string}
         */
        ConsentModel: "opt_in" | "opt_out" | "notice_only";
        /**
         * @description Where a decision came from.
         * @enum {string}
         */
        ConsentSource: "banner" | "preference_centre" | "placeholder" | "api" | "import" | "gpc" | "opt_out_request" | "one_click_unsubscribe";
        /**
         * @description The consent state of one data subject.
         * @example {
         *       "needs_consent": false,
         *       "purposes": {
         *         "marketing": {
         *           "allowed": true,
         *           "decision": "granted",
         *           "expires_at": "2027-12-29T10:00:00Z",
         *           "policy_revision": "2021-02-01",
         *           "reason": "granted",
         *           "source": "api",
         *           "status": "granted",
         *           "updated_at": "2026-11-29T10:00:00Z"
         *         }
         *       },
         *       "subject": "email:ada@example.com"
         *     }
         */
        ConsentState: {
            /**
             * Format: date-time
             * @description With `?as_of=`: the instant the state is shown for (RFC 3339, UTC).
             */
            as_of?: string | null;
            /**
             * @description On the public endpoint: whether the request carried the GPC signal (`Sec-GPC: 1`) and it
             *     was honoured, so the page can show "Opt-Out Request Honored" (11 CCR §7025(c)(6)).
             */
            gpc_honored?: boolean | null;
            /** @description True when any `opt_in` purpose is `not_asked`, `stale` or `expired`. */
            needs_consent: boolean;
            /**
             * @description With `?as_of=`: the policy revisions in force then (effective by then; the latest per
             *     policy).
             */
            policies_in_force?: components["schemas"]["PolicyInForce"][] | null;
            purposes: {
                [key: string]: components["schemas"]["PurposeState"];
            };
            /** @description The subject as normalised (`email:` lower-cased, `phone:` in E.164). */
            subject: string;
        };
        /**
         * @description A cookie name, or a prefix followed by `*` (`_ga_*` matches `_ga_ABC123`).
         * @example _ga_*
         */
        CookiePattern: string;
        /**
         * @description A person's explicit decision for one purpose.
         * @enum {string}
         */
        Decision: "granted" | "denied";
        /** @description One field at fault. */
        FieldProblem: {
            /** @description The field's path in the request, e.g. `choices.analytics`, `subjects[3]`, `region`. */
            field: string;
            message: string;
        };
        /**
         * @description A host name, or `*.` and a domain for its subdomains; no scheme, port or path.
         * @example *.doubleclick.net
         */
        HostPattern: string;
        /**
         * @description The GDPR Art. 6(1) basis a purpose relies on.
         * @enum {string}
         */
        LegalBasis: "consent" | "contract" | "legitimate_interest" | "legal_obligation";
        PolicyInForce: {
            /** Format: date-time */
            effective_at: string;
            policy_key: string;
            requires_reconsent: boolean;
            revision_date: string;
            sha256?: string | null;
            url: string;
        };
        /** @description `presentation` of `GET /v1/sites/{key}/config`: send `token` back with the write. */
        PresentationToken: {
            /**
             * Format: date-time
             * @description When the token was issued: the start of the current UTC hour (the same token all hour).
             */
            issued_at: string;
            /**
             * @description SHA-256 (hex) of what the banner shows: `sha256("consentry-presentation-v1\n" + JSON)`,
             *     the JSON being `{"policies": [{"key", "revision_date", "sha256", "url"}], "purposes":
             *     [{"consent_model", "description", "key", "title"}]}` with sorted keys and no whitespace,
             *     in the order of this config's `policies` and `purposes`.
             */
            sha256: string;
            /**
             * @description A compact JWS (`EdDSA`, header `kid`; the keys of `GET /.well-known/jwks.json`) whose
             *     claims are `iss`, `iat`, `schema` (`consentry-presentation/1`), `tenant`, `site` (id),
             *     `region`, `locale` and `sha256`.
             * @example eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiJ9.eyJzaGEyNTYiOiIuLi4ifQ.c2ln
             */
            token: string;
        };
        /**
         * @description An RFC 9457 problem details object.
         * @example {
         *       "detail": "choices.necessary: 'necessary' is strictly necessary (notice_only) and cannot be refused",
         *       "errors": [
         *         {
         *           "field": "choices.necessary",
         *           "message": "'necessary' is strictly necessary (notice_only) and cannot be refused"
         *         }
         *       ],
         *       "status": 400,
         *       "title": "The request is invalid",
         *       "type": "https://consentry.dev/problems/invalid-request"
         *     }
         */
        Problem: {
            /** @description What went wrong in this occurrence, precisely. */
            detail: string;
            /** @description For validation problems: each field at fault. */
            errors?: components["schemas"]["FieldProblem"][];
            /** @description The request's id (its `X-Request-Id`, given or generated), to find it in the logs. */
            request_id?: string | null;
            /**
             * Format: int32
             * @description The HTTP status code.
             */
            status: number;
            /** @description A short summary of the problem type, the same for every occurrence. */
            title: string;
            /** @description A URI naming the problem type (RFC 9457 §3.1.1). */
            type: string;
        };
        PublicPurpose: {
            /** @description The consent model in force for the requested region. */
            consent_model: components["schemas"]["ConsentModel"];
            /**
             * @description Cookie names and `prefix*` patterns its vendors set: the SDK deletes those it sees
             *     when the purpose is refused or withdrawn.
             */
            cookies: components["schemas"]["CookiePattern"][];
            description: string;
            gpc_applies: boolean;
            /** @description Hosts and `*.domain` patterns its vendors load from (for the tracker audit). */
            hosts: components["schemas"]["HostPattern"][];
            key: string;
            kind: components["schemas"]["PurposeKind"];
            legal_basis: components["schemas"]["LegalBasis"];
            /** Format: int32 */
            max_age_days?: number | null;
            title: string;
        };
        PublicSiteInfo: {
            name: string;
            site_key: string;
        };
        /**
         * @description What a purpose covers.
         * @enum {string}
         */
        PurposeKind: "cookie_category" | "processing" | "communication";
        /** @description One purpose's state for one data subject. */
        PurposeState: {
            /** @description Whether the purpose may be pursued for this person now. */
            allowed: boolean;
            decision?: components["schemas"]["Decision"] | null;
            /**
             * Format: date-time
             * @description When a grant lapses (`updated_at` + the purpose's `max_age_days`); null when it does not.
             */
            expires_at?: string | null;
            /** @description The policy revision date the person saw when deciding. */
            policy_revision?: string | null;
            /** @description Why `allowed` is what it is. */
            reason: components["schemas"]["Reason"];
            /**
             * Format: date-time
             * @description After an opt-out of sale/sharing: do not ask the person to opt back in before this
             *     instant (Cal. Civ. Code §1798.135(c)(4), 12 months).
             */
            reprompt_after?: string | null;
            source?: components["schemas"]["ConsentSource"] | null;
            status: components["schemas"]["Status"];
            /**
             * Format: date-time
             * @description When the decision in force was made (RFC 3339, UTC).
             */
            updated_at?: string | null;
        };
        /**
         * @description Why `allowed` is what it is (the `reason` of a consent check).
         * @enum {string}
         */
        Reason: "granted" | "refused" | "gpc" | "opt_out_request" | "not_asked" | "policy_changed" | "expired" | "notice_only" | "default_opt_out";
        /** @description The result of recording choices. */
        RecordResponse: {
            consents?: components["schemas"]["ConsentState"] | null;
            /** @description The events written, one per purpose whose decision changed (empty when nothing changed). */
            event_ids: string[];
            /**
             * @description Purposes granted while the GPC signal was present: recorded, but the opt-out stays in
             *     force (11 CCR §7025(c)(3)).
             */
            gpc_conflicts?: string[];
            /**
             * @description True when a Global Privacy Control signal was received and honoured: show
             *     "Opt-Out Request Honored" (11 CCR §7025(c)(6)).
             */
            gpc_honored: boolean;
            /**
             * @description Present and true when the write's `presentation` token was issued longer ago than the
             *     server's `receipts.presentation_max_age` (default 24 h): the choices were recorded with
             *     the site's current presentation instead.
             */
            presentation_stale?: boolean;
            /**
             * @description The signed consent receipt of this submission: a compact JWS (`EdDSA`, header `kid`)
             *     whose claims name the events written, the policies in force and each purpose's decision
             *     and consent model (ISO/IEC TS 27560). Check it with `GET /.well-known/jwks.json` or
             *     `POST /v1/receipts/verify`. Added once the submission is committed.
             * @example eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiJ9.eyJqdGkiOiIuLi4ifQ.c2ln
             */
            receipt?: string | null;
        };
        /**
         * @example {
         *       "choices": {
         *         "social_media": false,
         *         "statistics": true
         *       },
         *       "policy_revision": "2021-02-01",
         *       "source": "banner",
         *       "visitor_id": "0b9c3f1e-8d4a-4f6e-9a51-2c7d8e9f0a1b"
         *     }
         */
        RecordVisitorConsents: {
            /** @description Purpose key → granted (`true`) or refused (`false`); 1 to 200 of the site's purposes. */
            choices: components["schemas"]["ChoicesSchema"];
            /** @description The page saw `navigator.globalPrivacyControl === true` (the `Sec-GPC: 1` header counts too). */
            gpc?: boolean | null;
            /**
             * @description A JWT from the site's backend (HS256 keyed with the site's identity secret string as given,
             *     claims `sub` = the user id and `exp`, 60 s leeway): the visitor is that user, and the
             *     browser's anonymous history joins the user before the choices are recorded (a browser
             *     that was another user's moves to this one without merging the two people). A bad or
             *     expired token is a 401; nothing is recorded.
             */
            identity_token?: string | null;
            /** @description The revision date (`YYYY-MM-DD`) of the policy shown; must be in force. */
            policy_revision: components["schemas"]["RevisionDate"];
            /**
             * @description `presentation.token` of `GET /v1/sites/{site_key}/config` (for this site and `region`):
             *     what the visitor was shown. Its hash is stored with the events and named in the receipt.
             *     A token that does not verify, or was issued for another site or region, is a 400 naming
             *     `presentation`; one older than the server's `receipts.presentation_max_age` (default
             *     24 h) is replaced by the current presentation, and the response says
             *     `presentation_stale: true`. Absent (older SDKs): nothing is recorded for it.
             */
            presentation?: string | null;
            region?: components["schemas"]["RegionCode"] | null;
            /** @description `banner`, `preference_centre` or `placeholder`. */
            source: components["schemas"]["VisitorSource"];
            /**
             * Format: uuid
             * @description The visitor's UUID (set by the SDK in a first-party cookie), hyphenated.
             */
            visitor_id: string;
        };
        /**
         * @description ISO 3166-1 alpha-2 country or ISO 3166-2 subdivision code, any case.
         * @example US-CA
         */
        RegionCode: string;
        /**
         * @description A revision date, YYYY-MM-DD: a valid calendar date from 1970 on.
         * @example 2021-02-01
         */
        RevisionDate: string;
        SiteConfig: {
            /**
             * Format: double
             * @description The share of page views (0 to 1) on which the SDK runs the tracker audit; 0: never.
             */
            audit_sample_rate: number;
            /**
             * Format: int32
             * @description How long the SDK keeps choices in its cookie, in days.
             */
            cookie_max_age_days: number;
            /** @description Whether any purpose honours the Global Privacy Control signal. */
            gpc_honored: boolean;
            locale?: string | null;
            /** @description The revisions in force, latest per policy. */
            policies: components["schemas"]["PolicyInForce"][];
            /**
             * @description What this banner shows (the purposes' titles, descriptions and consent models; the
             *     policies' revisions and sha256), hashed and signed: send `presentation.token` back as
             *     `presentation` with the write, and the receipt names what the person was shown.
             */
            presentation: components["schemas"]["PresentationToken"];
            /** @description Every purpose, with its consent model for `region`. */
            purposes: components["schemas"]["PublicPurpose"][];
            /** @description The region the consent models were resolved for. */
            region?: string | null;
            site: components["schemas"]["PublicSiteInfo"];
        };
        /**
         * @description The status of a purpose for a data subject.
         * @enum {string}
         */
        Status: "granted" | "denied" | "not_asked" | "stale" | "expired";
        /**
         * @description The sources a browser may name.
         * @enum {string}
         */
        VisitorSource: "banner" | "preference_centre" | "placeholder";
    };
    responses: never;
    parameters: never;
    requestBodies: never;
    headers: never;
    pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
    get_site_config: {
        parameters: {
            query?: {
                /** @description ISO 3166-1 alpha-2 or ISO 3166-2 code (`US-CA`): consent models are resolved for it. */
                region?: components["schemas"]["RegionCode"];
                /** @description BCP 47 language tag of the visitor, e.g. `en-US` (echoed; titles are the tenant's text). */
                locale?: string;
            };
            header?: never;
            path: {
                /** @description The site's public key */
                site_key: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The configuration */
            200: {
                headers: {
                    /** @description Strong entity tag of the body (RFC 9110 §8.8.3) */
                    ETag?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SiteConfig"];
                };
            };
            /** @description Not modified: the `If-None-Match` names the current ETag (RFC 9110 §13.1.2) */
            304: {
                headers: {
                    /** @description The current entity tag */
                    ETag?: string;
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Malformed region */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description Origin not allowed */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description Unknown site key */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description A rate limit was reached (per site and client address, or per token); retry after `Retry-After` seconds (`RateLimit`, `RateLimit-Policy`) */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description The database does not answer; retry after `Retry-After` seconds */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
        };
    };
    get_visitor_consents: {
        parameters: {
            query?: {
                /** @description ISO 3166-1 alpha-2 or ISO 3166-2 code (`US-CA`) for regional consent models. */
                region?: components["schemas"]["RegionCode"];
            };
            header?: {
                /** @description `1`: the Global Privacy Control signal, recorded as an opt-out before the state is read */
                "Sec-GPC"?: string | null;
            };
            path: {
                /** @description The site's public key */
                site_key: string;
                /** @description The visitor's UUID, hyphenated */
                visitor_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Per-purpose state */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ConsentState"];
                };
            };
            /** @description Malformed visitor id or region */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description Origin not allowed */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description Unknown site key */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description A rate limit was reached (per site and client address, or per token); retry after `Retry-After` seconds (`RateLimit`, `RateLimit-Policy`) */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description The database does not answer; retry after `Retry-After` seconds */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
        };
    };
    record_visitor_consents: {
        parameters: {
            query?: never;
            header?: {
                /** @description 1 to 255 visible ASCII characters (a UUID, say); makes a retry return the first result without writing again */
                "Idempotency-Key"?: string | null;
                /** @description `1`: the Global Privacy Control signal */
                "Sec-GPC"?: string | null;
            };
            path: {
                /** @description The site's public key */
                site_key: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["RecordVisitorConsents"];
            };
        };
        responses: {
            /** @description Recorded (committed). When the API is served on the page's site (`consent.example.com` for `www.example.com`), also `Set-Cookie: consentry_<8 characters of the site key>_id=<visitor id>` for their shared domain, 395 days, so that browsers capping script-set cookies keep the visitor */
            201: {
                headers: {
                    /** @description Only when a read replica is configured: an opaque token (the primary's WAL position once this write committed). Send it back as `Consentry-Read-After` on a follow-up read to see this write there */
                    "Consentry-Read-After"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["RecordResponse"];
                };
            };
            /** @description Invalid visitor id, purpose, revision, source or presentation */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description The identity token is not valid or has expired */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description Origin missing or not allowed */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description Unknown site key */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description The body is larger than the configured limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description The body is not `application/json` */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description The Idempotency-Key was used for another request */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description A rate limit was reached (per site and client address, or per token); retry after `Retry-After` seconds (`RateLimit`, `RateLimit-Policy`) */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description The database does not answer; retry after `Retry-After` seconds */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
        };
    };
}
