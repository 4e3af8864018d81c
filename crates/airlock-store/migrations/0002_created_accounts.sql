-- Accounts airlock itself created in an Airflow instance; an account missing here was created
-- outside airlock. Usernames compare case-insensitively: username_key is the lowercase form,
-- username keeps the spelling airlock used.
CREATE TABLE created_accounts (
    instance TEXT NOT NULL,
    username_key TEXT NOT NULL,
    username TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (instance, username_key)
);
