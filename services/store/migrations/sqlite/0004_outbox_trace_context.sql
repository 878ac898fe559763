-- The trace context of the change an event announces, SQLite dialect (the same in
-- migrations/postgres/0004_outbox_trace_context.sql). The outbox relay puts it in the event's
-- `traceparent` extension, so one trace runs from the request that caused a signature to
-- the verifiers that learn of it. Nullable: events written before this migration, and
-- changes made outside any trace, have none.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
