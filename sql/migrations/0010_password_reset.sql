-- 0010: password reset by email.
--
-- A reset link is an account token of the new purpose 'reset_password'
-- (30 minutes, one use; only its SHA-256 is stored, like 'set_password').
-- A new reset request deletes the account's earlier unused reset tokens, and
-- setting a password through any token deletes the account's other unused
-- tokens: the index serves both lookups by account.
ALTER TABLE account_tokens DROP CONSTRAINT account_tokens_purpose_check;
ALTER TABLE account_tokens ADD CONSTRAINT account_tokens_purpose_check
    CHECK (purpose IN ('set_password', 'reset_password'));
CREATE INDEX account_tokens_account_unused ON account_tokens (account_id, purpose) WHERE used_at IS NULL;
