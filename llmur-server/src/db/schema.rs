//! The diesel schema shared by both backends, column for column the tables that
//! `migrations/sqlite` and `migrations/postgres` create.
//!
//! Owns: the `table!` declarations. Must not touch: backend-specific SQL types — every
//! column uses a type both SQLite and PostgreSQL map (Text, BigInt, Integer, Bool, Binary,
//! Double), which is what lets one set of queries serve both.

diesel::table! {
    catalog_version (id) {
        id -> Integer,
        version -> BigInt,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        name -> Text,
        email -> Text,
        email_key -> Text,
        role -> Text,
        blocked -> Bool,
        email_verified -> Bool,
        password_hash -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        token_hash -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked -> Bool,
    }
}

diesel::table! {
    projects (id) {
        id -> Text,
        name -> Text,
        limits -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    memberships (id) {
        id -> Text,
        user_id -> Text,
        project_id -> Text,
        role -> Text,
    }
}

diesel::table! {
    invites (id) {
        id -> Text,
        project_id -> Text,
        code -> Text,
        role -> Text,
        valid_until -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    connections (id) {
        id -> Text,
        provider -> Text,
        api_endpoint -> Text,
        model -> Text,
        api_version -> Nullable<Text>,
        api_key_version -> Integer,
        api_key_nonce -> Binary,
        api_key_ciphertext -> Binary,
        price -> Nullable<Text>,
        limits -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    deployments (id) {
        id -> Text,
        name -> Text,
        access -> Text,
        strategy -> Text,
        blocked -> Bool,
        limits -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    connection_deployments (id) {
        id -> Text,
        connection_id -> Text,
        deployment_id -> Text,
        weight -> Integer,
    }
}

diesel::table! {
    virtual_keys (id) {
        id -> Text,
        project_id -> Text,
        key_hash -> Text,
        alias -> Text,
        description -> Nullable<Text>,
        blocked -> Bool,
        limits -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    virtual_key_deployments (id) {
        id -> Text,
        virtual_key_id -> Text,
        deployment_id -> Text,
    }
}

diesel::table! {
    request_logs (seq) {
        seq -> BigInt,
        id -> Text,
        request_id -> Text,
        virtual_key_id -> Text,
        project_id -> Text,
        deployment_id -> Text,
        deployment -> Text,
        connection_id -> Text,
        upstream_model -> Text,
        endpoint -> Text,
        stream -> Bool,
        status -> Integer,
        prompt_tokens -> BigInt,
        completion_tokens -> BigInt,
        usage_source -> Text,
        cost_usd -> Nullable<Double>,
        started_at -> BigInt,
        ttfb_us -> Nullable<BigInt>,
        duration_us -> BigInt,
        client_disconnected -> Bool,
        error -> Nullable<Text>,
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(memberships -> projects (project_id));
diesel::joinable!(invites -> projects (project_id));
diesel::joinable!(connection_deployments -> connections (connection_id));
diesel::joinable!(connection_deployments -> deployments (deployment_id));
diesel::joinable!(virtual_keys -> projects (project_id));
diesel::joinable!(virtual_key_deployments -> virtual_keys (virtual_key_id));
diesel::joinable!(virtual_key_deployments -> deployments (deployment_id));

diesel::allow_tables_to_appear_in_same_query!(
    catalog_version,
    users,
    sessions,
    projects,
    memberships,
    invites,
    connections,
    deployments,
    connection_deployments,
    virtual_keys,
    virtual_key_deployments,
    request_logs,
);
