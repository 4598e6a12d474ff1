//! What feeds the channels from accepted events: live metrics (`metrics`),
//! the activity feed (`activity`) and live SQL queries (`query:<id>`).
//!
//! One task reads the store's feed of accepted batches (`Store::subscribe`)
//! and, per batch: publishes each event on the workspace's `activity`
//! channel (when that channel exists), folds the rows into the workspace's
//! live metrics (when someone watches them or did in the last ten minutes,
//! [`KEEP_UNWATCHED`]), and marks the workspace's live
//! queries dirty. Two tickers publish: metrics at most every
//! `metrics_interval` when they changed, and dirty queries at most every
//! `query_debounce` (at most `query_concurrency` at once per workspace),
//! only when the result changed.
//!
//! ## Live metrics
//!
//! For today, this week and this month in the workspace's calendar (its
//! time zone and week start, the buckets of `business_date`), over events
//! whose `timestamp` falls in the period:
//! `revenue` (sum of `revenue` of `Order Completed` and `Booking
//! Completed`), `refunds` (of `Order Refunded`), `net`, `orders`,
//! `completed_bookings`, `aov` (revenue / (orders + completed bookings), 2
//! decimals): money and these counts in the workspace currency (or none),
//! as the analytics API's `revenue`; `bookings` (`Booking Created`), `cancellations`
//! (`Booking Cancelled`), `no_shows` (`Booking No Show`), `visitors`
//! (distinct persons, `coalesce(user_id, anonymous_id)`, with any event),
//! `buyers` (distinct persons with an order) and `conversion_rate`
//! (buyers / visitors); plus `visitors_5m`, distinct persons with an event
//! in the last five minutes. Money is a decimal string with 4 places, as
//! in SQL answers. Each period also has `previous`, the same numbers over
//! the same span of the period before (yesterday until this time of day,
//! last week until this weekday and time, last month until this day and
//! time), summed by SQL at the start and every minute after, and `change`,
//! each number's relative change from it (as the analytics API's).
//!
//! The state starts from one SQL query over a store snapshot that records
//! the last WAL sequence number it contains; batches from the feed up to
//! that number are skipped, later ones applied, so nothing counts twice or
//! is missed. If the feed lags (a burst beyond its capacity) or a period
//! ends, the state is rebuilt from SQL.
//!
//! Every "now" (the current periods, the five-minute window, the push
//! throttle) comes from the injected clock given to [`Live::start`]; tokio
//! timers only pace the tickers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Decimal128Type, TimestampMicrosecondType};
use beacon_engine::Engine;
use beacon_engine::udf::time::{BusinessCalendar, Unit};
use beacon_ingest::Clock;
use beacon_ingest::schema::columns;
use beacon_ingest::store::AcceptedBatch;
use chrono::NaiveDate;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, broadcast};
use tokio::task::JoinHandle;

use crate::hub::Hub;
use crate::{Error, Result};

/// Channel names.
pub mod channels {
    /// Live KPI tiles.
    pub const METRICS: &str = "metrics";
    /// Accepted events.
    pub const ACTIVITY: &str = "activity";
    /// Alert state changes.
    pub const ALERTS: &str = "alerts";
    /// Prefix of a live query's channel.
    pub const QUERY_PREFIX: &str = "query:";
}

const ORDER: &str = "Order Completed";
const REFUND: &str = "Order Refunded";
const BOOKING: &str = "Booking Created";
const COMPLETED: &str = "Booking Completed";
const CANCELLED: &str = "Booking Cancelled";
const NO_SHOW: &str = "Booking No Show";
/// Window of `visitors_5m`.
const RECENT_US: i64 = 5 * 60 * 1_000_000;
/// Money columns are Decimal128 with this many places.
const MONEY_SCALE: u32 = 4;

/// How often the previous periods' spans (which grow with the clock) are
/// summed again.
const PREVIOUS_REFRESH: Duration = Duration::from_secs(60);

/// How long a workspace's live metrics are kept up to date after the last
/// watcher left, so a reload or the next visitor gets them at once instead
/// of waiting for the start state's queries (a few hundred milliseconds at
/// 10M events). Memory: the visitor sets of the month, per workspace.
const KEEP_UNWATCHED: Duration = Duration::from_secs(600);

/// The instant (µs) a local day starts in the calendar's zone (the first
/// instant of the day where a DST gap skips midnight).
fn local_midnight_us(calendar: &BusinessCalendar, day: NaiveDate) -> Option<i64> {
    use chrono::TimeZone;
    (0..3).find_map(|h| {
        calendar
            .tz
            .from_local_datetime(&day.and_hms_opt(h, 0, 0)?)
            .earliest()
            .map(|t| t.timestamp_micros())
    })
}

/// Sums of one period.
#[derive(Debug, Clone, Default)]
struct PeriodAgg {
    /// First local day of the period (`business_date` bucket).
    bucket: Option<NaiveDate>,
    revenue: i128,
    refunds: i128,
    orders: u64,
    completed_bookings: u64,
    bookings: u64,
    cancellations: u64,
    no_shows: u64,
    visitors: HashSet<String>,
    buyers: HashSet<String>,
}

impl PeriodAgg {
    fn to_json(&self) -> Value {
        let sales = self.orders + self.completed_bookings;
        let aov = if sales == 0 {
            Value::Null
        } else {
            // Rounded half away from zero to cents, as the analytics API.
            let cents = div_round(self.revenue, sales as i128 * 100);
            json!(format_scaled(cents, 2))
        };
        let conversion = if self.visitors.is_empty() {
            Value::Null
        } else {
            json!(self.buyers.len() as f64 / self.visitors.len() as f64)
        };
        json!({
            "from": self.bucket.map(|d| d.to_string()),
            "revenue": format_scaled(self.revenue, MONEY_SCALE),
            "refunds": format_scaled(self.refunds, MONEY_SCALE),
            "net": format_scaled(self.revenue - self.refunds, MONEY_SCALE),
            "orders": self.orders,
            "completed_bookings": self.completed_bookings,
            "aov": aov,
            "bookings": self.bookings,
            "cancellations": self.cancellations,
            "no_shows": self.no_shows,
            "visitors": self.visitors.len(),
            "buyers": self.buyers.len(),
            "conversion_rate": conversion,
        })
    }
}

/// `n / d` rounded half away from zero (`d > 0`).
fn div_round(n: i128, d: i128) -> i128 {
    let q = n / d;
    let r = n % d;
    if 2 * r.abs() >= d { q + n.signum() } else { q }
}

/// A scaled integer as a decimal string (`12345, 2` -> `"123.45"`).
fn format_scaled(v: i128, scale: u32) -> String {
    let factor = 10i128.pow(scale);
    let sign = if v < 0 { "-" } else { "" };
    let a = v.abs();
    if scale == 0 {
        return format!("{sign}{a}");
    }
    format!(
        "{sign}{}.{:0width$}",
        a / factor,
        a % factor,
        width = scale as usize
    )
}

/// One workspace's live metrics.
#[derive(Debug)]
struct TenantMetrics {
    calendar: BusinessCalendar,
    /// The workspace currency: money in others is not added.
    currency: String,
    /// WAL sequence number the SQL start state includes.
    seq: u64,
    /// Today, this week, this month.
    periods: [PeriodAgg; 3],
    /// The same span of the period before each (yesterday until this time
    /// of day, ...), as published; `None` before the calendar's range.
    previous: [Option<Value>; 3],
    /// When `previous` was computed (clock µs): it is refreshed every
    /// [`PREVIOUS_REFRESH_US`] as the span grows.
    previous_at_us: i64,
    /// Person -> latest event time, for `visitors_5m`.
    recent: HashMap<String, i64>,
    last_published: Option<Value>,
    /// Rows were applied since the last evaluation.
    dirty: bool,
    /// When the value was last computed and last published (clock µs).
    last_eval_us: i64,
    last_push_us: Option<i64>,
    /// When the last watcher left (clock µs); `None` while watched.
    unwatched_since: Option<i64>,
}

/// True when at least `d` has passed from `since_us` to `now_us`, or the
/// clock went back (a wall-clock step must not hold pushes back).
fn passed(since_us: i64, now_us: i64, d: Duration) -> bool {
    now_us < since_us || (now_us - since_us) as u128 >= d.as_micros()
}

const UNITS: [(Unit, &str); 3] = [
    (Unit::Day, "today"),
    (Unit::Week, "week"),
    (Unit::Month, "month"),
];

impl TenantMetrics {
    fn apply(&mut self, batch: &RecordBatch, now: i64) {
        let Some(rows) = Rows::of(batch) else {
            tracing::warn!("Accepted batch without the event columns; live metrics skip it.");
            return;
        };
        let buckets: Vec<Option<NaiveDate>> = self.periods.iter().map(|p| p.bucket).collect();
        for i in 0..batch.num_rows() {
            let ts = rows.ts.value(i);
            let person = rows.person(i);
            let event = rows.event(i);
            if let Some(p) = &person
                && ts > now - RECENT_US
            {
                let e = self.recent.entry(p.clone()).or_insert(ts);
                *e = (*e).max(ts);
            }
            for (k, (unit, _)) in UNITS.iter().enumerate() {
                if buckets[k].is_none() || self.calendar.bucket(ts, *unit) != buckets[k] {
                    continue;
                }
                let agg = &mut self.periods[k];
                if let Some(p) = &person {
                    agg.visitors.insert(p.clone());
                }
                let own = rows.in_currency(i, &self.currency);
                match event {
                    Some(ORDER) => {
                        if own {
                            agg.orders += 1;
                            agg.revenue += rows.revenue(i);
                        }
                        if let Some(p) = &person {
                            agg.buyers.insert(p.clone());
                        }
                    }
                    Some(COMPLETED) if own => {
                        agg.completed_bookings += 1;
                        agg.revenue += rows.revenue(i);
                    }
                    Some(REFUND) if own => agg.refunds += rows.revenue(i),
                    Some(BOOKING) => agg.bookings += 1,
                    Some(CANCELLED) => agg.cancellations += 1,
                    Some(NO_SHOW) => agg.no_shows += 1,
                    _ => {}
                }
            }
        }
    }

    fn value(&mut self, now_us: i64) -> Value {
        self.recent.retain(|_, ts| *ts > now_us - RECENT_US);
        let mut doc = serde_json::Map::new();
        for (k, (_, name)) in UNITS.iter().enumerate() {
            let mut period = self.periods[k].to_json();
            let previous = self.previous[k].clone().unwrap_or(Value::Null);
            if let (Some(cur), Some(prev)) = (period.as_object(), previous.as_object()) {
                period["change"] = beacon_engine::analytics::change(cur, prev);
            }
            period["previous"] = previous;
            doc.insert((*name).into(), period);
        }
        doc.insert("visitors_5m".into(), json!(self.recent.len()));
        doc.insert("timezone".into(), json!(self.calendar.tz.name()));
        Value::Object(doc)
    }

    /// True when a period of the state is no longer the current one.
    fn stale(&self, now_us: i64) -> bool {
        UNITS
            .iter()
            .enumerate()
            .any(|(k, (unit, _))| self.calendar.bucket(now_us, *unit) != self.periods[k].bucket)
    }
}

/// Typed access to the columns live code reads.
struct Rows<'a> {
    ts: &'a arrow::array::PrimitiveArray<TimestampMicrosecondType>,
    event: &'a arrow::array::StringArray,
    user: &'a arrow::array::StringArray,
    anon: &'a arrow::array::StringArray,
    revenue: &'a arrow::array::PrimitiveArray<Decimal128Type>,
    currency: &'a arrow::array::StringArray,
}

impl<'a> Rows<'a> {
    fn of(batch: &'a RecordBatch) -> Option<Self> {
        Some(Self {
            ts: batch
                .column_by_name(columns::TIMESTAMP)?
                .as_primitive_opt()?,
            event: batch.column_by_name(columns::EVENT)?.as_string_opt()?,
            user: batch.column_by_name(columns::USER_ID)?.as_string_opt()?,
            anon: batch
                .column_by_name(columns::ANONYMOUS_ID)?
                .as_string_opt()?,
            revenue: batch.column_by_name(columns::REVENUE)?.as_primitive_opt()?,
            currency: batch.column_by_name(columns::CURRENCY)?.as_string_opt()?,
        })
    }

    /// True when row `i` has no currency or `currency`.
    fn in_currency(&self, i: usize, currency: &str) -> bool {
        !self.currency.is_valid(i) || self.currency.value(i) == currency
    }

    fn person(&self, i: usize) -> Option<String> {
        if self.user.is_valid(i) {
            Some(self.user.value(i).to_owned())
        } else if self.anon.is_valid(i) {
            Some(self.anon.value(i).to_owned())
        } else {
            None
        }
    }

    fn event(&self, i: usize) -> Option<&'a str> {
        self.event.is_valid(i).then(|| self.event.value(i))
    }

    fn revenue(&self, i: usize) -> i128 {
        if self.revenue.is_valid(i) {
            self.revenue.value(i)
        } else {
            0
        }
    }
}

/// A live query of one workspace.
#[derive(Debug)]
struct LiveQuery {
    sql: String,
    dirty: bool,
    running: bool,
    last: Option<Value>,
}

/// The producer side of the channels (see the module docs).
#[derive(Debug, Clone)]
pub struct Live {
    hub: Hub,
    engine: Engine,
    clock: Arc<dyn Clock>,
    metrics: Arc<tokio::sync::Mutex<HashMap<String, TenantMetrics>>>,
    queries: Arc<Mutex<HashMap<(String, String), LiveQuery>>>,
    limits: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl Live {
    /// Starts the feed reader and the tickers; abort the handles to stop.
    /// `clock` is the wall clock (periods are calendar periods).
    pub fn start(hub: Hub, engine: Engine, clock: Arc<dyn Clock>) -> (Self, Vec<JoinHandle<()>>) {
        let live = Self {
            hub,
            engine,
            clock,
            metrics: Arc::default(),
            queries: Arc::default(),
            limits: Arc::default(),
        };
        let feed = {
            let live = live.clone();
            let rx = live.engine.store().subscribe();
            tokio::spawn(async move { live.read_feed(rx).await })
        };
        let metrics = {
            let live = live.clone();
            tokio::spawn(async move { live.metrics_ticker().await })
        };
        let queries = {
            let live = live.clone();
            tokio::spawn(async move { live.query_ticker().await })
        };
        (live, vec![feed, metrics, queries])
    }

    /// The hub the channels live in.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    async fn read_feed(&self, mut rx: broadcast::Receiver<Arc<AcceptedBatch>>) {
        loop {
            match rx.recv().await {
                Ok(accepted) => self.on_batch(&accepted).await,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "Live feed lagged; rebuilding live metrics from storage."
                    );
                    self.metrics.lock().await.clear();
                    let mut q = self.queries.lock();
                    for query in q.values_mut() {
                        query.dirty = true;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }

    async fn on_batch(&self, accepted: &AcceptedBatch) {
        let tenant = accepted.tenant.as_str();
        if self.hub.existing(tenant, channels::ACTIVITY).is_some() {
            publish_activity(&self.hub, tenant, &accepted.batch);
        }
        {
            let mut metrics = self.metrics.lock().await;
            if let Some(m) = metrics.get_mut(tenant)
                && accepted.seq > m.seq
            {
                m.apply(&accepted.batch, self.clock.now_us());
                m.dirty = true;
            }
        }
        let mut q = self.queries.lock();
        for ((t, _), query) in q.iter_mut() {
            if t == tenant {
                query.dirty = true;
            }
        }
    }

    /// Forgets a deleted workspace's live metrics and live queries.
    pub async fn delete_tenant(&self, tenant: &str) {
        self.metrics.lock().await.remove(tenant);
        self.queries.lock().retain(|(t, _), _| t != tenant);
        self.limits.lock().remove(tenant);
    }

    /// Builds the workspace's metrics from storage if needed, publishes
    /// them when they changed and returns them (the current snapshot).
    pub async fn ensure_metrics(&self, tenant: &str) -> Result<Value> {
        let mut metrics = self.metrics.lock().await;
        let now = self.clock.now_us();
        let rebuild = metrics.get(tenant).is_none_or(|m| m.stale(now));
        if rebuild {
            let m = self.load_metrics(tenant, now).await?;
            metrics.insert(tenant.to_owned(), m);
        }
        let m = metrics
            .get_mut(tenant)
            .expect("inserted above when missing");
        if !rebuild && passed(m.previous_at_us, now, PREVIOUS_REFRESH) {
            let calendar = m.calendar;
            let currency = m.currency.clone();
            m.previous = self.load_previous(tenant, calendar, &currency, now).await?;
            m.previous_at_us = now;
        }
        let value = m.value(now);
        m.dirty = false;
        m.last_eval_us = self.clock.now_us();
        if m.last_published.as_ref() != Some(&value) {
            self.hub
                .publish(tenant, channels::METRICS, "update", &value, None)?;
            m.last_published = Some(value.clone());
            m.last_push_us = Some(self.clock.now_us());
        }
        Ok(value)
    }

    /// The ticker's step for one workspace: rebuild at a period change,
    /// else publish when rows arrived (or a second passed, for
    /// `visitors_5m`) and the last push is at least `metrics_interval` old.
    async fn maybe_push(&self, tenant: &str) -> Result<()> {
        let interval = self.hub.config().metrics_interval;
        {
            let metrics = self.metrics.lock().await;
            let now = self.clock.now_us();
            if let Some(m) = metrics.get(tenant)
                && !m.stale(now)
            {
                let due = m.dirty
                    || passed(m.last_eval_us, now, Duration::from_secs(1))
                    || passed(m.previous_at_us, now, PREVIOUS_REFRESH);
                let allowed = m.last_push_us.is_none_or(|t| passed(t, now, interval));
                if !(due && allowed) {
                    return Ok(());
                }
            }
        }
        self.ensure_metrics(tenant).await.map(|_| ())
    }

    /// The start state from one consistent snapshot of storage.
    async fn load_metrics(&self, tenant: &str, now_us: i64) -> Result<TenantMetrics> {
        let snapshot = self.engine.store().snapshot(tenant);
        let seq = snapshot.seq;
        let workspace = self.engine.calendar(tenant);
        let (calendar, currency) = (workspace.business(), workspace.currency);
        // Currencies are upper-cased letters at ingest and in the catalog.
        let own = format!(
            "(currency IS NULL OR currency = '{}')",
            currency.replace('\'', "''")
        );
        let ctx = self.engine.session_for(tenant, snapshot).await?;
        let mut periods: [PeriodAgg; 3] = Default::default();
        let mut earliest: Option<NaiveDate> = None;
        for (k, (unit, _)) in UNITS.iter().enumerate() {
            let bucket = calendar.bucket(now_us, *unit);
            periods[k].bucket = bucket;
            earliest = match (earliest, bucket) {
                (Some(e), Some(b)) => Some(e.min(b)),
                (e, b) => e.or(b),
            };
        }
        let Some(earliest) = earliest else {
            return Err(Error::InvalidMessage("the clock is out of range".into()));
        };
        // A UTC bound two days before the earliest local period start is
        // a superset for every time zone; business_date decides exactly.
        let lower = (earliest - chrono::Duration::days(2)).to_string();
        let recent_from = chrono::DateTime::from_timestamp_micros(now_us - RECENT_US)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        // The periods, the recent visitors and the previous periods are
        // independent queries: run at once (the first dashboard after a
        // start waits for all of them).
        let windows = periods.iter().zip(UNITS.iter()).map(|(agg, (unit, _))| {
            let unit_name = match unit {
                Unit::Day => "day",
                Unit::Week => "week",
                _ => "month",
            };
            let (ctx, own) = (&ctx, &own);
            let bucket = agg.bucket;
            let in_period = bucket.map(|b| {
                format!(
                    "timestamp >= TIMESTAMP '{lower}T00:00:00Z' AND business_date(timestamp, '{unit_name}') = DATE '{b}'"
                )
            });
            async move {
                let mut agg = PeriodAgg {
                    bucket,
                    ..PeriodAgg::default()
                };
                if let Some(w) = in_period {
                    self.load_window(ctx, own, &w, &mut agg).await?;
                }
                Ok::<_, Error>(agg)
            }
        });
        let sql = format!(
            "SELECT coalesce(user_id, anonymous_id) AS person, max(timestamp) AS ts FROM events \
             WHERE timestamp > TIMESTAMP '{recent_from}' AND coalesce(user_id, anonymous_id) IS NOT NULL GROUP BY 1"
        );
        let recent = async {
            let mut recent = HashMap::new();
            for b in self.engine.execute(&ctx, &sql).await?.batches {
                let persons = b.column(0).as_string::<i32>();
                let ts = b.column(1).as_primitive::<TimestampMicrosecondType>();
                for i in 0..b.num_rows() {
                    recent.insert(persons.value(i).to_owned(), ts.value(i));
                }
            }
            Ok::<_, Error>(recent)
        };
        let (aggs, recent, previous) = futures::try_join!(
            futures::future::try_join_all(windows),
            recent,
            self.load_previous(tenant, calendar, &currency, now_us)
        )?;
        for (k, agg) in aggs.into_iter().enumerate() {
            periods[k] = agg;
        }
        Ok(TenantMetrics {
            calendar,
            currency,
            seq,
            periods,
            previous,
            previous_at_us: now_us,
            recent,
            last_published: None,
            dirty: false,
            last_eval_us: self.clock.now_us(),
            last_push_us: None,
            unwatched_since: None,
        })
    }

    /// Sums one window of events (`in_window`: a SQL condition) into
    /// `agg`, as the feed would have.
    async fn load_window(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        own: &str,
        in_window: &str,
        agg: &mut PeriodAgg,
    ) -> Result<()> {
        let sums = format!(
            "SELECT CAST(coalesce(sum(revenue) FILTER (WHERE event IN ('{ORDER}', '{COMPLETED}') AND {own}), 0) AS DECIMAL(38, 4)) AS revenue, \
                    CAST(coalesce(sum(revenue) FILTER (WHERE event = '{REFUND}' AND {own}), 0) AS DECIMAL(38, 4)) AS refunds, \
                    count(*) FILTER (WHERE event = '{ORDER}' AND {own}) AS orders, \
                    count(*) FILTER (WHERE event = '{BOOKING}') AS bookings, \
                    count(*) FILTER (WHERE event = '{CANCELLED}') AS cancellations, \
                    count(*) FILTER (WHERE event = '{NO_SHOW}') AS no_shows, \
                    count(*) FILTER (WHERE event = '{COMPLETED}' AND {own}) AS completed_bookings \
             FROM events WHERE {in_window}"
        );
        let people = format!(
            "SELECT coalesce(user_id, anonymous_id) AS person, bool_or(event = '{ORDER}') AS bought \
             FROM events WHERE {in_window} AND coalesce(user_id, anonymous_id) IS NOT NULL GROUP BY 1"
        );
        let (result, persons) = futures::try_join!(
            self.engine.execute(ctx, &sums),
            self.engine.execute(ctx, &people)
        )?;
        let batch = result
            .batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| Error::InvalidMessage("no metrics row".into()))?;
        let dec = |c: usize| batch.column(c).as_primitive::<Decimal128Type>().value(0);
        let int = |c: usize| {
            batch
                .column(c)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0) as u64
        };
        agg.revenue = dec(0);
        agg.refunds = dec(1);
        agg.orders = int(2);
        agg.bookings = int(3);
        agg.cancellations = int(4);
        agg.no_shows = int(5);
        agg.completed_bookings = int(6);
        for b in persons.batches {
            let persons = b.column(0).as_string::<i32>();
            let bought = b.column(1).as_boolean();
            for i in 0..b.num_rows() {
                let p = persons.value(i).to_owned();
                if bought.is_valid(i) && bought.value(i) {
                    agg.buyers.insert(p.clone());
                }
                agg.visitors.insert(p);
            }
        }
        Ok(())
    }

    /// For each period, the same span of the one before: from its start
    /// for as long as the current period has run (yesterday until this
    /// time of day, last week until this weekday and time, last month
    /// until this day and time, cut at the current period's start).
    async fn load_previous(
        &self,
        tenant: &str,
        calendar: BusinessCalendar,
        currency: &str,
        now_us: i64,
    ) -> Result<[Option<Value>; 3]> {
        let own = format!(
            "(currency IS NULL OR currency = '{}')",
            currency.replace('\'', "''")
        );
        let ctx = self
            .engine
            .session_for(tenant, self.engine.store().snapshot(tenant))
            .await?;
        let at = |us: i64| {
            chrono::DateTime::from_timestamp_micros(us)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        let windows = UNITS.iter().map(|(unit, _)| {
            let bucket = calendar.bucket(now_us, *unit)?;
            let before = match unit {
                Unit::Day => bucket.pred_opt(),
                Unit::Week => bucket.checked_sub_days(chrono::Days::new(7)),
                _ => bucket.checked_sub_months(chrono::Months::new(1)),
            }?;
            let start = local_midnight_us(&calendar, bucket)?;
            let prev_start = local_midnight_us(&calendar, before)?;
            let prev_end = (prev_start + (now_us - start).max(0)).min(start);
            Some((before, prev_start, prev_end))
        });
        let loads = windows.map(|w| {
            let (ctx, own) = (&ctx, &own);
            async move {
                let Some((before, prev_start, prev_end)) = w else {
                    return Ok(None);
                };
                let window = format!(
                    "timestamp >= TIMESTAMP '{}' AND timestamp < TIMESTAMP '{}'",
                    at(prev_start),
                    at(prev_end)
                );
                let mut agg = PeriodAgg {
                    bucket: Some(before),
                    ..PeriodAgg::default()
                };
                self.load_window(ctx, own, &window, &mut agg).await?;
                let mut v = agg.to_json();
                v["to"] = json!(at(prev_end));
                Ok::<_, Error>(Some(v))
            }
        });
        let mut out: [Option<Value>; 3] = Default::default();
        for (k, v) in futures::future::try_join_all(loads)
            .await?
            .into_iter()
            .enumerate()
        {
            out[k] = v;
        }
        Ok(out)
    }

    async fn metrics_ticker(&self) {
        // Fine-grained ticks so a change after a quiet spell goes out at
        // once; `maybe_push` keeps pushes `metrics_interval` apart.
        let every = self
            .hub
            .config()
            .metrics_interval
            .min(Duration::from_millis(10));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let watched = self.hub.tenants_watching(channels::METRICS);
            {
                // Stop maintaining metrics nobody watched for a while.
                let now = self.clock.now_us();
                let mut metrics = self.metrics.lock().await;
                metrics.retain(|t, m| {
                    if watched.contains(t) {
                        m.unwatched_since = None;
                        return true;
                    }
                    let since = *m.unwatched_since.get_or_insert(now);
                    !passed(since, now, KEEP_UNWATCHED)
                });
            }
            for tenant in watched {
                if let Err(e) = self.maybe_push(&tenant).await {
                    tracing::warn!(%tenant, error = %e, "Live metrics failed.");
                }
            }
        }
    }

    /// Registers (or joins) the live query `id` and returns its current
    /// result. A new id needs `sql`; an existing one must get the same SQL
    /// or none.
    pub async fn ensure_query(&self, tenant: &str, id: &str, sql: Option<&str>) -> Result<Value> {
        let key = (tenant.to_owned(), id.to_owned());
        let known = self
            .queries
            .lock()
            .get(&key)
            .map(|q| (q.sql.clone(), q.last.clone()));
        let bad = |message: &str| Error::Query {
            id: id.to_owned(),
            message: message.to_owned(),
        };
        match (known, sql) {
            (Some((existing, Some(last))), given) => {
                if given.is_some_and(|s| s.trim() != existing.trim()) {
                    return Err(bad(
                        "this id is already live with different SQL; pick another id",
                    ));
                }
                Ok(last)
            }
            (Some((existing, None)), _) => self.first_run(tenant, id, &existing).await,
            (None, None) => Err(bad("a new live query needs \"sql\"")),
            (None, Some(sql)) => {
                if sql.trim().is_empty() {
                    return Err(bad("sql must not be empty"));
                }
                let count = self
                    .queries
                    .lock()
                    .keys()
                    .filter(|(t, _)| t == tenant)
                    .count();
                if count >= self.hub.config().max_live_queries {
                    return Err(bad(&format!(
                        "at most {} live queries per workspace",
                        self.hub.config().max_live_queries
                    )));
                }
                self.first_run(tenant, id, sql).await
            }
        }
    }

    async fn first_run(&self, tenant: &str, id: &str, sql: &str) -> Result<Value> {
        let value = self.run_query(tenant, sql).await?;
        let mut q = self.queries.lock();
        let entry = q
            .entry((tenant.to_owned(), id.to_owned()))
            .or_insert_with(|| LiveQuery {
                sql: sql.to_owned(),
                dirty: false,
                running: false,
                last: None,
            });
        if entry.last.is_none() {
            entry.last = Some(value.clone());
            self.hub.publish(
                tenant,
                &format!("{}{id}", channels::QUERY_PREFIX),
                "result",
                &value,
                None,
            )?;
        }
        Ok(entry.last.clone().unwrap_or(value))
    }

    async fn run_query(&self, tenant: &str, sql: &str) -> Result<Value> {
        let permit =
            {
                let mut limits = self.limits.lock();
                Arc::clone(limits.entry(tenant.to_owned()).or_insert_with(|| {
                    Arc::new(Semaphore::new(self.hub.config().query_concurrency))
                }))
            };
        let _permit = permit
            .acquire_owned()
            .await
            .map_err(|_| Error::InvalidMessage("shutting down".into()))?;
        let result = self.engine.sql(tenant, sql).await?;
        let mut doc = beacon_engine::json::to_json(&result.schema, &result.batches)?;
        doc["truncated"] = json!(result.truncated);
        Ok(doc)
    }

    async fn query_ticker(&self) {
        let every = self.hub.config().query_debounce;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let due: Vec<(String, String, String)> = {
                let mut q = self.queries.lock();
                // Forget queries nobody watches any more.
                q.retain(|(t, id), query| {
                    query.running
                        || self
                            .hub
                            .existing(t, &format!("{}{id}", channels::QUERY_PREFIX))
                            .is_some_and(|c| c.subscribers() > 0)
                });
                q.iter_mut()
                    .filter(|(_, query)| query.dirty && !query.running)
                    .map(|((t, id), query)| {
                        query.dirty = false;
                        query.running = true;
                        (t.clone(), id.clone(), query.sql.clone())
                    })
                    .collect()
            };
            for (tenant, id, sql) in due {
                let live = self.clone();
                tokio::spawn(async move { live.rerun(tenant, id, sql).await });
            }
        }
    }

    async fn rerun(&self, tenant: String, id: String, sql: String) {
        let outcome = self.run_query(&tenant, &sql).await;
        let channel = format!("{}{id}", channels::QUERY_PREFIX);
        let mut q = self.queries.lock();
        let Some(query) = q.get_mut(&(tenant.clone(), id.clone())) else {
            return;
        };
        query.running = false;
        match outcome {
            Ok(value) => {
                if query.last.as_ref() != Some(&value) {
                    query.last = Some(value.clone());
                    if let Err(e) = self.hub.publish(&tenant, &channel, "result", &value, None) {
                        tracing::warn!(%tenant, error = %e, "Publishing a live query failed.");
                    }
                }
            }
            Err(e) => {
                let value = json!({"error": {"code": e.code(), "message": e.to_string()}});
                if query.last.as_ref() != Some(&value) {
                    query.last = Some(value.clone());
                    let _ = self.hub.publish(&tenant, &channel, "error", &value, None);
                }
            }
        }
    }
}

/// One `activity` message per accepted event, published as one unit per batch.
fn publish_activity(hub: &Hub, tenant: &str, batch: &RecordBatch) {
    let Some(rows) = Rows::of(batch) else {
        return;
    };
    let text = |name: &str, i: usize| -> Value {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
            .filter(|c| c.is_valid(i))
            .map_or(Value::Null, |c| json!(c.value(i)))
    };
    let mut payloads = Vec::with_capacity(batch.num_rows());
    let mut events = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let event = rows.event(i).map(str::to_owned);
        let ts = chrono::DateTime::from_timestamp_micros(rows.ts.value(i))
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let revenue = rows
            .revenue
            .is_valid(i)
            .then(|| format_scaled(rows.revenue.value(i), MONEY_SCALE));
        let payload = json!({
            "message_id": text(columns::MESSAGE_ID, i),
            "type": text(columns::TYPE, i),
            "event": event,
            "user_id": text(columns::USER_ID, i),
            "anonymous_id": text(columns::ANONYMOUS_ID, i),
            "timestamp": ts,
            "revenue": revenue,
            "currency": text(columns::CURRENCY, i),
            "order_id": text(columns::ORDER_ID, i),
            "product_id": text(columns::PRODUCT_ID, i),
            "booking_id": text(columns::BOOKING_ID, i),
            "lead_id": text(columns::LEAD_ID, i),
            "status": text(columns::STATUS, i),
        });
        payloads.push(payload);
        events.push(event);
    }
    // One publish per batch: each subscriber gets the batch's events in
    // one queue operation and one socket write.
    let refs: Vec<(&Value, Option<String>)> = payloads.iter().zip(events).collect();
    if let Err(e) = hub.publish_many(tenant, channels::ACTIVITY, "event", &refs) {
        tracing::warn!(%tenant, error = %e, "Publishing activity failed.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_formatting_and_rounding() {
        assert_eq!(format_scaled(599_000, 4), "59.9000");
        assert_eq!(format_scaled(-5, 4), "-0.0005");
        assert_eq!(format_scaled(0, 4), "0.0000");
        assert_eq!(div_round(250, 100), 3);
        assert_eq!(div_round(-250, 100), -3);
        assert_eq!(div_round(249, 100), 2);
    }

    #[test]
    fn push_throttle_follows_the_injected_clock() {
        let second = Duration::from_secs(1);
        assert!(!passed(1_000_000, 1_999_999, second));
        assert!(passed(1_000_000, 2_000_000, second));
        assert!(
            passed(2_000_000, 1_000_000, second),
            "a clock that stepped back does not hold pushes back"
        );
    }
}
