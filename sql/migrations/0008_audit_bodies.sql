-- 0008: redacted request and response bodies on audit events, recorded only
-- for tools that opt in (tools.log_bodies). A call row may carry the tool
-- call's arguments (request_body), an outcome row the upstream's answer
-- (response_body), both redacted and size-capped by the application. The
-- event digest covers them whenever either is set, so an edited body is
-- detected by verification. The table stays append-only: the application
-- role keeps SELECT and INSERT only (granted in 0006), which covers the new
-- columns.
ALTER TABLE audit_events
    ADD COLUMN request_body  jsonb,
    ADD COLUMN response_body jsonb;
