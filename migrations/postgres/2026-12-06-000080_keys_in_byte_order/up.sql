-- Every text column a B-tree index orders by (ids, tenant and subject ids, identifiers, purpose
-- keys, idempotency keys, dates written as text, and the like) compares byte by byte: collation
-- "C", as SQLite's BINARY already does.
--
-- Under the database's own collation each comparison in an index descent went through the C
-- library's locale-aware strcoll, with both strings copied first; a write descends about 24
-- index entries and a check two or three. Measured with bench/run.sh (PostgreSQL 15, 8 s runs,
-- two rounds each, the same binary): in a database created with the en_US.UTF-8 locale (the
-- official postgres image's default) public writes +8% at 8 and 32 connections, returning
-- visitors' writes +6% and +15%, single checks @32 +13%; with C.UTF-8, writes @32 +7%.
--
-- Nothing compares these columns with a locale's rules in mind: they hold UUIDs, hex digests,
-- ASCII keys and ISO dates, whose byte order is their natural order. A comparison of a "C"
-- column with a column or value of the database's collation is made in "C" (the default
-- collation yields to any other). Changing only the collation rewrites no table, but rebuilds
-- each index on these columns, under a lock that blocks writes meanwhile: about a minute per
-- 10 million consent events on 2 cores (estimated from two such indexes built at 1M subjects,
-- 4 million entries in about 5 s).
DO $$
DECLARE
  t record;
BEGIN
  FOR t IN
    SELECT c.relname,
           string_agg(format('ALTER COLUMN %I TYPE text COLLATE "C"', a.attname), ', ' ORDER BY a.attnum) AS changes
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE c.relkind = 'r'
      AND a.atttypid = 'text'::regtype
      AND a.attcollation <> '"C"'::regcollation
      AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND a.attnum = ANY (i.indkey))
    GROUP BY c.relname
    ORDER BY c.relname
  LOOP
    EXECUTE format('ALTER TABLE %I %s', t.relname, t.changes);
  END LOOP;
END $$;
