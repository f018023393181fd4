use crate::db::schema::tracker_observations as t;
use crate::db::AnyConnection;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// What the tracker audit saw of one item on one site in one day (UTC), under one declared
/// purpose (`unclassified` when none declares it), with or without that purpose allowed.
/// `example_paths` is a JSON array of up to [`MAX_EXAMPLE_PATHS`] page paths (no query).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = t)]
pub struct ObservationRow {
    pub tenant_id: String,
    pub site_id: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// `cookie` or `host`.
    pub item_kind: String,
    pub item: String,
    pub purpose_key: String,
    pub without_consent: bool,
    /// Reports that saw it.
    pub seen: i64,
    /// Of those, reports from a browser sending Global Privacy Control.
    pub seen_with_gpc: i64,
    pub example_paths: String,
    pub first_seen_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
}

/// How many example page paths a row keeps.
pub const MAX_EXAMPLE_PATHS: usize = 5;

impl ObservationRow {
    /// The example paths (a corrupt list reads as an error).
    pub fn paths(&self) -> QueryResult<Vec<String>> {
        serde_json::from_str(&self.example_paths).map_err(|_| super::corrupt("example paths", &self.example_paths))
    }
}

impl ObservationRow {
    /// The stored row with this row's key, if any.
    pub fn find_same(&self, conn: &mut AnyConnection) -> QueryResult<Option<Self>> {
        t::table
            .find((&self.site_id, &self.day, &self.item_kind, &self.item, &self.purpose_key, self.without_consent))
            .select(Self::as_select())
            .first(conn)
            .optional()
    }

    /// Adds `self`'s counts, paths and last time to the stored row of the same key.
    pub fn update_counts(&self, conn: &mut AnyConnection, stored: &Self) -> QueryResult<()> {
        diesel::update(t::table.find((
            &self.site_id,
            &self.day,
            &self.item_kind,
            &self.item,
            &self.purpose_key,
            self.without_consent,
        )))
        .set((
            t::seen.eq(t::seen + self.seen),
            t::seen_with_gpc.eq(t::seen_with_gpc + self.seen_with_gpc),
            t::example_paths.eq(&stored.example_paths),
            t::last_seen_at.eq(self.last_seen_at.max(stored.last_seen_at)),
        ))
        .execute(conn)
        .map(drop)
    }

    pub fn insert(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        diesel::insert_into(t::table).values(self).execute(conn).map(drop)
    }

    /// Whether the site ever saw `item` without consent to `purpose_key` (any day).
    pub fn violated_before(
        conn: &mut AnyConnection,
        site_id: &str,
        item_kind: &str,
        item: &str,
        purpose_key: &str,
    ) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            t::table
                .filter(t::site_id.eq(site_id))
                .filter(t::item_kind.eq(item_kind))
                .filter(t::item.eq(item))
                .filter(t::purpose_key.eq(purpose_key))
                .filter(t::without_consent.eq(true)),
        ))
        .get_result(conn)
    }

    /// A site's rows from `since` (`YYYY-MM-DD`, inclusive; `None`: all), by item, day, then
    /// with consent before without;
    /// `only_violations`: those seen without consent only.
    pub fn list(
        conn: &mut AnyConnection,
        tenant_id: &str,
        site_id: &str,
        since: Option<&str>,
        only_violations: bool,
    ) -> QueryResult<Vec<Self>> {
        let mut q = t::table.filter(t::tenant_id.eq(tenant_id)).filter(t::site_id.eq(site_id)).into_boxed();
        if let Some(since) = since {
            q = q.filter(t::day.ge(since.to_owned()));
        }
        if only_violations {
            q = q.filter(t::without_consent.eq(true));
        }
        q.order((t::item_kind.asc(), t::item.asc(), t::purpose_key.asc(), t::day.asc(), t::without_consent.asc()))
            .limit(MAX_ROWS_LISTED)
            .select(Self::as_select())
            .load(conn)
    }
}

/// The most rows a listing reads (a site with more distinct items per period is cut).
pub const MAX_ROWS_LISTED: i64 = 50_000;
