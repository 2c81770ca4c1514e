-- 0003 auth: refresh tokens (rotated, in families) and API keys.
-- Only hashes of the secrets are stored: a database leak yields no token.

-- A login starts a family; every refresh spends one token and issues the
-- next in the same family.  A spent token presented again means it was
-- stolen (or replayed), and the whole family is revoked.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   uuid NOT NULL,
    token_hash  bytea NOT NULL UNIQUE,      -- SHA-256 of the token
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Keys for REST clients and SDKs: "crest_" + 32 random base64url bytes,
-- shown once.  The prefix (the first characters after "crest_") lets a
-- user tell keys apart in a list without the secret.
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    prefix        text NOT NULL,
    key_hash      bytea NOT NULL UNIQUE,    -- SHA-256 of the whole key
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX api_keys_user_idx ON api_keys (user_id, created_at DESC);
