-- pgbench custom script: one single-row INSERT into the scratch table bench_insert
-- (created by bench/run.sh in database consentry_pgbench). Run with -M prepared.
INSERT INTO bench_insert (a, b) VALUES (md5(random()::text), md5(random()::text));
