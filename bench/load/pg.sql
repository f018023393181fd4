-- One batch of the scale loader on PostgreSQL: subjects @FROM@..@TO@ of tenant @TENANT_ID@,
-- 10 events each, their visitor identifiers and consent_states. bench/run.sh substitutes the
-- @…@ placeholders and runs one batch per transaction. Every value is derived from the subject
-- number n (md5), so the rows are consistent by construction: foreign-key triggers are skipped
-- (session_replication_role = replica) for speed. Columns: migrations/postgres/*/up.sql.
--   subject id      md5('subject-'||n) as a UUID;  identifier  visitor:<md5('visitor-'||n) as a UUID>
--   event k (0..9)  id md5('event-'||n||'-'||k) as a UUID; purpose statistics/marketing/social_media
--                   by k % 3; decision denied when (n+k) % 4 = 0, else granted; one minute apart
--   hash(n,k)       md5(n||':'||k) || md5(k||':'||n) (64 hex); prev_hash the previous hash or 64 zeros
--                   (plausible, not the real chain: `consentry ledger verify` reports these subjects)
--   consent_states  the last event of each purpose: k = 9, 7, 8
BEGIN;
SET LOCAL session_replication_role = replica;
SET LOCAL synchronous_commit = off;

CREATE TEMP TABLE bench_s ON COMMIT DROP AS
SELECT n,
       md5('subject-' || n)::uuid::text AS subject_id,
       md5('visitor-' || n)::uuid::text AS visitor,
       (now() AT TIME ZONE 'UTC') - make_interval(days => (n % 300)::int, secs => (n % 86400)::double precision)
           - interval '10 minutes' AS t0
FROM generate_series(@FROM@::bigint, @TO@::bigint) AS n;

INSERT INTO data_subjects (id, tenant_id, last_event_hash, created_at, merged_into)
SELECT subject_id, '@TENANT_ID@', md5(n || ':9') || md5('9:' || n), t0, NULL FROM bench_s ORDER BY n;

INSERT INTO subject_identifiers (tenant_id, identifier, subject_id, created_at)
SELECT '@TENANT_ID@', 'visitor:' || visitor, subject_id, t0 FROM bench_s ORDER BY n;

INSERT INTO consent_events (id, tenant_id, subject_id, purpose_key, decision, policy_revision, source,
                            region, site_id, occurred_at, recorded_at, prev_hash, hash)
SELECT md5('event-' || n || '-' || k)::uuid::text, '@TENANT_ID@', subject_id,
       (ARRAY['statistics', 'marketing', 'social_media'])[k % 3 + 1],
       CASE WHEN (n + k) % 4 = 0 THEN 'denied' ELSE 'granted' END,
       '@REVISION@', 'banner', 'US-CA', '@SITE_ID@',
       t0 + k * interval '1 minute', t0 + k * interval '1 minute',
       CASE WHEN k = 0 THEN repeat('0', 64) ELSE md5(n || ':' || (k - 1)) || md5((k - 1) || ':' || n) END,
       md5(n || ':' || k) || md5(k || ':' || n)
FROM bench_s, generate_series(0, 9) AS k
ORDER BY n, k;

INSERT INTO consent_states (tenant_id, purpose_key, subject_id, decision, event_id, policy_revision, source,
                            occurred_at, recorded_at)
SELECT '@TENANT_ID@', (ARRAY['statistics', 'marketing', 'social_media'])[k % 3 + 1], subject_id,
       CASE WHEN (n + k) % 4 = 0 THEN 'denied' ELSE 'granted' END,
       md5('event-' || n || '-' || k)::uuid::text, '@REVISION@', 'banner',
       t0 + k * interval '1 minute', t0 + k * interval '1 minute'
FROM bench_s, (VALUES (7), (8), (9)) AS last(k)
ORDER BY n, k;
COMMIT;
