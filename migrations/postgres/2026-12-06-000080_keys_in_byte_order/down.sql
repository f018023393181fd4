-- The indexed text columns compare under the database's collation again.
DO $$
DECLARE
  t record;
BEGIN
  FOR t IN
    SELECT c.relname,
           string_agg(format('ALTER COLUMN %I TYPE text COLLATE "default"', a.attname), ', ' ORDER BY a.attnum) AS changes
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE c.relkind = 'r'
      AND a.atttypid = 'text'::regtype
      AND a.attcollation = '"C"'::regcollation
      AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND a.attnum = ANY (i.indkey))
    GROUP BY c.relname
    ORDER BY c.relname
  LOOP
    EXECUTE format('ALTER TABLE %I %s', t.relname, t.changes);
  END LOOP;
END $$;
