-- 0001 foundation: users, plans and their limits, subscriptions, usage
-- counters and the jobs table.
--
-- scripts/migrate.sh runs this file in a single transaction, so it must not
-- contain BEGIN/COMMIT itself.

-- Keeps updated_at honest without every UPDATE statement having to remember
-- it.  Attached to every table that has an updated_at column.
CREATE FUNCTION crest_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- ---------------------------------------------------------------- users
CREATE TABLE users (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Stored lowercased so that uniqueness is case-insensitive without citext
    -- and lookups can use the plain unique index.
    email             text NOT NULL UNIQUE CHECK (email = lower(email)),
    name              text,
    password_hash     text,          -- NULL for accounts created via OAuth
    role              text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    avatar_url        text,
    email_verified_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------- plans
CREATE TABLE plans (
    id              text PRIMARY KEY,            -- 'free', 'pro', 'enterprise'
    name            text NOT NULL,
    price_cents     integer NOT NULL DEFAULT 0 CHECK (price_cents >= 0),
    currency        text NOT NULL DEFAULT 'usd',
    stripe_price_id text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per (plan, usage type) rather than a jsonb blob: the quota check
-- joins on it, and a CHECK constraint keeps usage types consistent with
-- user_usage.
CREATE TABLE plan_limits (
    plan_id       text NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    usage_type    text NOT NULL
                  CHECK (usage_type IN ('scrape', 'download', 'ai_generation', 'upload', 'clip')),
    monthly_limit integer NOT NULL CHECK (monthly_limit >= -1),   -- -1 = unlimited
    PRIMARY KEY (plan_id, usage_type)
);

INSERT INTO plans (id, name, price_cents, currency) VALUES
    ('free',       'Free',          0, 'usd'),
    ('pro',        'Pro',        1900, 'usd'),
    ('enterprise', 'Enterprise', 9900, 'usd');

INSERT INTO plan_limits (plan_id, usage_type, monthly_limit) VALUES
    ('free',       'scrape',          10),
    ('free',       'download',         5),
    ('free',       'ai_generation',   10),
    ('free',       'upload',           5),
    ('free',       'clip',             3),
    ('pro',        'scrape',         500),
    ('pro',        'download',       200),
    ('pro',        'ai_generation', 1000),
    ('pro',        'upload',         100),
    ('pro',        'clip',           100),
    ('enterprise', 'scrape',          -1),
    ('enterprise', 'download',        -1),
    ('enterprise', 'ai_generation',   -1),
    ('enterprise', 'upload',          -1),
    ('enterprise', 'clip',            -1);

-- -------------------------------------------------------- subscriptions
CREATE TABLE subscriptions (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    plan_id                text NOT NULL REFERENCES plans (id),
    -- Stripe's subscription statuses, verbatim.
    status                 text NOT NULL DEFAULT 'active'
                           CHECK (status IN ('active', 'trialing', 'past_due', 'canceled',
                                             'incomplete', 'incomplete_expired', 'unpaid',
                                             'paused')),
    stripe_customer_id     text,
    stripe_subscription_id text UNIQUE,
    current_period_start   timestamptz,
    current_period_end     timestamptz,
    cancel_at_period_end   boolean NOT NULL DEFAULT false,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- A user has at most one subscription that grants access; ended ones are
-- kept for history.
CREATE UNIQUE INDEX subscriptions_one_live_per_user
    ON subscriptions (user_id)
    WHERE status IN ('active', 'trialing', 'past_due');

CREATE INDEX subscriptions_stripe_customer_idx ON subscriptions (stripe_customer_id);

-- ----------------------------------------------------------- user_usage
-- One counter per user, usage type and billing period; incremented with
-- INSERT ... ON CONFLICT DO UPDATE.
CREATE TABLE user_usage (
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    usage_type   text NOT NULL
                 CHECK (usage_type IN ('scrape', 'download', 'ai_generation', 'upload', 'clip')),
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL,
    count        integer NOT NULL DEFAULT 0 CHECK (count >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, usage_type, period_start),
    CHECK (period_end > period_start)
);

-- ----------------------------------------------------------------- jobs
-- The durable record of every background job.  A row is written first
-- (status 'pending') and then pushed to the Redis queue; the outbox
-- reconciler re-enqueues rows left 'pending' if that push never happened.
CREATE TABLE jobs (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid REFERENCES users (id) ON DELETE CASCADE,   -- NULL: system job
    queue        text NOT NULL,
    name         text NOT NULL,
    data         jsonb NOT NULL DEFAULT '{}',
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'queued', 'active', 'completed', 'failed',
                                   'cancelled')),
    progress     jsonb,
    result       jsonb,
    error        text,
    attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    enqueued_at  timestamptz,
    started_at   timestamptz,
    finished_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX jobs_user_created_idx ON jobs (user_id, created_at DESC);

-- Small by construction: only rows the reconciler still has to push.
CREATE INDEX jobs_pending_idx ON jobs (created_at) WHERE status = 'pending';

-- ------------------------------------------------------------- triggers
CREATE TRIGGER users_touch_updated_at
    BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION crest_touch_updated_at();

CREATE TRIGGER plans_touch_updated_at
    BEFORE UPDATE ON plans
    FOR EACH ROW EXECUTE FUNCTION crest_touch_updated_at();

CREATE TRIGGER subscriptions_touch_updated_at
    BEFORE UPDATE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION crest_touch_updated_at();

CREATE TRIGGER user_usage_touch_updated_at
    BEFORE UPDATE ON user_usage
    FOR EACH ROW EXECUTE FUNCTION crest_touch_updated_at();

CREATE TRIGGER jobs_touch_updated_at
    BEFORE UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION crest_touch_updated_at();
