//! Table definitions shared by both backends (see migrations/postgres and migrations/sqlite).

diesel::table! {
    instance_keys (name) {
        name -> Text,
        secret -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    config_versions (tenant_id) {
        tenant_id -> Text,
        version -> BigInt,
    }
}

diesel::table! {
    tenants (id) {
        id -> Text,
        slug -> Text,
        subject_key -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        tenant_id -> Text,
        scopes -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        label -> Nullable<Text>,
    }
}

diesel::table! {
    sites (id) {
        id -> Text,
        tenant_id -> Text,
        site_key -> Text,
        name -> Text,
        origins -> Text,
        purposes -> Nullable<Text>,
        created_at -> Timestamp,
        identity_secret -> Nullable<Text>,
        audit_sample_rate -> Double,
    }
}

diesel::table! {
    purposes (tenant_id, key) {
        tenant_id -> Text,
        key -> Text,
        title -> Text,
        description -> Text,
        kind -> Text,
        consent_model -> Text,
        legal_basis -> Text,
        gpc_applies -> Bool,
        max_age_days -> Nullable<Integer>,
        regions -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        cookies -> Text,
        hosts -> Text,
        retention_days -> Nullable<Integer>,
    }
}

diesel::table! {
    policy_revisions (id) {
        id -> Text,
        tenant_id -> Text,
        policy_key -> Text,
        revision_date -> Text,
        effective_at -> Timestamp,
        url -> Text,
        sha256 -> Nullable<Text>,
        requires_reconsent -> Bool,
        purposes -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    data_subjects (id) {
        id -> Text,
        tenant_id -> Text,
        last_event_hash -> Text,
        created_at -> Timestamp,
        merged_into -> Nullable<Text>,
    }
}

diesel::table! {
    subject_identifiers (tenant_id, identifier) {
        tenant_id -> Text,
        identifier -> Text,
        subject_id -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    consent_events (seq) {
        seq -> BigInt,
        id -> Text,
        tenant_id -> Text,
        subject_id -> Text,
        purpose_key -> Text,
        decision -> Text,
        policy_revision -> Nullable<Text>,
        source -> Text,
        region -> Nullable<Text>,
        site_id -> Nullable<Text>,
        occurred_at -> Timestamp,
        recorded_at -> Timestamp,
        prev_hash -> Text,
        hash -> Text,
        tx_id -> BigInt,
        presentation_sha256 -> Nullable<Text>,
    }
}

diesel::table! {
    consent_states (tenant_id, purpose_key, subject_id) {
        tenant_id -> Text,
        purpose_key -> Text,
        subject_id -> Text,
        decision -> Text,
        event_id -> Text,
        policy_revision -> Nullable<Text>,
        source -> Text,
        occurred_at -> Timestamp,
        recorded_at -> Timestamp,
    }
}

diesel::table! {
    idempotency_keys (tenant_id, scope, key) {
        tenant_id -> Text,
        scope -> Text,
        key -> Text,
        request_hash -> Text,
        status -> Integer,
        response -> Text,
        created_at -> Timestamp,
        receipt_id -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    api_tokens,
    sites,
    purposes,
    policy_revisions,
    data_subjects,
    subject_identifiers,
    consent_events,
    consent_states,
    idempotency_keys,
);

diesel::table! {
    opt_out_requests (id) {
        id -> Text,
        tenant_id -> Text,
        subject_id -> Text,
        channel -> Text,
        scope -> Text,
        received_at -> Timestamp,
        due_at -> Timestamp,
        completed_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        completion_note -> Nullable<Text>,
    }
}

diesel::table! {
    webhooks (id) {
        id -> Text,
        tenant_id -> Text,
        url -> Text,
        events -> Text,
        secret -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        tenant_id -> Text,
        webhook_id -> Text,
        event_id -> Text,
        event_type -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        lease -> Nullable<Text>,
        retry_started_at -> Timestamp,
        last_attempt_at -> Nullable<Timestamp>,
        last_response_status -> Nullable<Integer>,
        last_error -> Nullable<Text>,
        delivered_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    tracker_observations (site_id, day, item_kind, item, purpose_key, without_consent) {
        tenant_id -> Text,
        site_id -> Text,
        day -> Text,
        item_kind -> Text,
        item -> Text,
        purpose_key -> Text,
        without_consent -> Bool,
        seen -> BigInt,
        seen_with_gpc -> BigInt,
        example_paths -> Text,
        first_seen_at -> Timestamp,
        last_seen_at -> Timestamp,
    }
}

diesel::table! {
    analytics_cursors (tenant_id) {
        tenant_id -> Text,
        tx_id -> BigInt,
        seq -> BigInt,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    analytics_decisions (tenant_id, day, site_id, region, purpose_key, source, decision) {
        tenant_id -> Text,
        day -> Text,
        site_id -> Text,
        region -> Text,
        purpose_key -> Text,
        source -> Text,
        decision -> Text,
        count -> BigInt,
    }
}

diesel::table! {
    consent_receipts (id) {
        id -> Text,
        tenant_id -> Text,
        subject_id -> Text,
        idempotency -> Nullable<Text>,
        event_ids -> Text,
        jws -> Text,
        issued_at -> Timestamp,
    }
}

diesel::table! {
    analytics_submissions (tenant_id, day, site_id, region, source, outcome, gpc) {
        tenant_id -> Text,
        day -> Text,
        site_id -> Text,
        region -> Text,
        source -> Text,
        outcome -> Text,
        gpc -> Bool,
        count -> BigInt,
    }
}

diesel::table! {
    import_keys (tenant_id, key) {
        tenant_id -> Text,
        key -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    console_sign_in_codes (code_sha256) {
        code_sha256 -> Text,
        tenant_id -> Text,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    presentations (tenant_id, sha256) {
        tenant_id -> Text,
        sha256 -> Text,
        content -> Text,
        token -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    ledger_checkpoints (tenant_id, subject_id) {
        tenant_id -> Text,
        subject_id -> Text,
        events -> BigInt,
        first_occurred_at -> Timestamp,
        last_occurred_at -> Timestamp,
        last_hash -> Text,
        through_seq -> BigInt,
        jws -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    ledger_pruning (event_id) {
        event_id -> Text,
    }
}

diesel::table! {
    pruned_feed_positions (tenant_id, seq) {
        tenant_id -> Text,
        seq -> BigInt,
        tx_id -> BigInt,
    }
}

diesel::table! {
    ledger_keys (kid) {
        kid -> Text,
        x -> Text,
        created_at -> Timestamp,
    }
}
