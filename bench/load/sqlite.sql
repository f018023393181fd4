-- One batch of the scale loader on SQLite: subjects @FROM@..@TO@ of tenant @TENANT_ID@, 10 events
-- each, their visitor identifiers and consent_states (columns: migrations/sqlite/*/up.sql).
-- bench/run.sh substitutes the @…@ placeholders and runs one batch per transaction with the
-- sqlite3 shell (foreign keys off there; the rows are consistent by construction). No md5 in
-- SQLite: each subject gets random ids and a random 64-hex seed; hash(n,k) is the seed rotated
-- by 6k digits, prev_hash the previous one or 64 zeros (plausible, not the real chain).
-- Events: purpose by k % 3, denied when (n+k) % 4 = 0, one minute apart; states: k = 9, 7, 8.
BEGIN;
CREATE TEMP TABLE bench_s AS
WITH RECURSIVE c(n) AS (SELECT @FROM@ UNION ALL SELECT n + 1 FROM c WHERE n < @TO@),
r AS MATERIALIZED (SELECT n, lower(hex(randomblob(16))) AS a, lower(hex(randomblob(16))) AS b,
             lower(hex(randomblob(32))) AS seed FROM c)
SELECT n,
       substr(a, 1, 8) || '-' || substr(a, 9, 4) || '-' || substr(a, 13, 4) || '-' || substr(a, 17, 4) || '-' || substr(a, 21, 12) AS subject_id,
       substr(b, 1, 8) || '-' || substr(b, 9, 4) || '-4' || substr(b, 14, 3) || '-8' || substr(b, 18, 3) || '-' || substr(b, 21, 12) AS visitor,
       substr(b, 1, 8) || '-' || substr(a, 1, 4) || '-' || substr(a, 5, 4) || '-' || substr(a, 9, 4) AS event_prefix,
       seed || seed AS seed2,
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (n % 300) || ' days', '-' || (n % 86400) || ' seconds', '-10 minutes') AS t0
FROM r;

INSERT INTO data_subjects (id, tenant_id, last_event_hash, created_at, merged_into)
SELECT subject_id, '@TENANT_ID@', substr(seed2, 9 * 6 + 1, 64), t0, NULL FROM bench_s ORDER BY n;

INSERT INTO subject_identifiers (tenant_id, identifier, subject_id, created_at)
SELECT '@TENANT_ID@', 'visitor:' || visitor, subject_id, t0 FROM bench_s ORDER BY n;

CREATE TEMP TABLE bench_k AS
WITH RECURSIVE k(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM k WHERE k < 9) SELECT k FROM k;

INSERT INTO consent_events (id, tenant_id, subject_id, purpose_key, decision, policy_revision, source,
                            region, site_id, occurred_at, recorded_at, prev_hash, hash)
SELECT printf('%s-%012x', event_prefix, n * 10 + k), '@TENANT_ID@', subject_id,
       CASE k % 3 WHEN 0 THEN 'statistics' WHEN 1 THEN 'marketing' ELSE 'social_media' END,
       CASE WHEN (n + k) % 4 = 0 THEN 'denied' ELSE 'granted' END,
       '@REVISION@', 'banner', 'US-CA', '@SITE_ID@',
       strftime('%Y-%m-%d %H:%M:%f', t0, '+' || k || ' minutes'),
       strftime('%Y-%m-%d %H:%M:%f', t0, '+' || k || ' minutes'),
       CASE WHEN k = 0 THEN '0000000000000000000000000000000000000000000000000000000000000000'
            ELSE substr(seed2, (k - 1) * 6 + 1, 64) END,
       substr(seed2, k * 6 + 1, 64)
FROM bench_s, bench_k
ORDER BY n, k;

INSERT INTO consent_states (tenant_id, purpose_key, subject_id, decision, event_id, policy_revision, source,
                            occurred_at, recorded_at)
SELECT '@TENANT_ID@', CASE k % 3 WHEN 0 THEN 'statistics' WHEN 1 THEN 'marketing' ELSE 'social_media' END,
       subject_id, CASE WHEN (n + k) % 4 = 0 THEN 'denied' ELSE 'granted' END,
       printf('%s-%012x', event_prefix, n * 10 + k), '@REVISION@', 'banner',
       strftime('%Y-%m-%d %H:%M:%f', t0, '+' || k || ' minutes'),
       strftime('%Y-%m-%d %H:%M:%f', t0, '+' || k || ' minutes')
FROM bench_s, bench_k WHERE k >= 7
ORDER BY n, k;

DROP TABLE bench_s;
DROP TABLE bench_k;
COMMIT;
