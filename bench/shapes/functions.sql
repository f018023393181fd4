-- Helpers for the shape scripts: time-ordered UUIDs as the server makes them (UUIDv7, RFC 9562
-- §5.7: B-tree inserts at the right edge) and filler text for the receipt and stored response.
-- Rows under `toast_tuple_target` (8,160 bytes on those tables) are stored as they are, not
-- compressed, so the filler's content does not matter, only its length.
CREATE OR REPLACE FUNCTION uuid7() RETURNS uuid AS $$
  SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING
    substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$ LANGUAGE sql VOLATILE;
-- 32 × n characters.
CREATE OR REPLACE FUNCTION filler(n int) RETURNS text AS $$
  SELECT repeat(md5(random()::text), n)
$$ LANGUAGE sql VOLATILE;
