//! The built-in data generator: an online shop and an appointment business
//! in one workspace, deterministic for a seed, calibrated on the real
//! datasets (`datasets/calibration.json`, written by
//! `datasets/scripts/calibrate.py`; how each number is used is documented in
//! `datasets/README.md`).
//!
//! The generator is a simulation advanced through time: [`Generator::advance`]
//! produces the Segment messages of `[from, to)` in time order. Everything a
//! visit or a booking causes later (a refund, the appointment, a restock) is
//! scheduled and emitted when time gets there, so history and live traffic
//! come from the same process. The same seed and the same sequence of
//! `advance` calls give the same messages.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::LazyLock;

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::Tz;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma, LogNormal, Poisson};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::message::{Message, Money, iso, local_to_utc};

/// The calibration file, embedded.
pub static CALIBRATION: LazyLock<Calibration> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../calibration.json"))
        .expect("datasets/calibration.json is valid")
});

/// Numbers taken from the real datasets (see `datasets/calibration.json`).
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct Calibration {
    pub shop: ShopCalibration,
    pub bookings: BookingCalibration,
    pub funnel: FunnelCalibration,
}

/// From Online Retail.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct ShopCalibration {
    pub hour_weights: [f64; 24],
    pub weekday_weights_smoothed: [f64; 7],
    pub order_value_lognormal: LogNormalParams,
    pub unit_price_lognormal: LogNormalParams,
    pub repeat_customer_share: f64,
    pub refund_rate: f64,
    pub monthly_index: [f64; 12],
}

/// From hotel bookings.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct BookingCalibration {
    pub no_show_rate: f64,
    pub lead_time_days: LeadTime,
    pub weekday_weights: [f64; 7],
    pub monthly_index: [f64; 12],
    pub cancellation_by_lead_time: Vec<LeadBucket>,
}

/// From the clickstream.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct FunnelCalibration {
    pub cart_session_share: f64,
    pub purchase_session_share: f64,
    pub purchase_without_cart_share: f64,
    pub mean_views_per_session: f64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[allow(missing_docs)]
pub struct LogNormalParams {
    pub mu: f64,
    pub sigma: f64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[allow(missing_docs)]
pub struct LeadTime {
    pub p10: f64,
    pub p25: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub share_zero: f64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[allow(missing_docs)]
pub struct LeadBucket {
    pub lead_time_min: f64,
    pub lead_time_max: Option<f64>,
    pub cancellation_rate: f64,
}

/// Documented assumptions on top of the calibration (see `datasets/README.md`).
pub mod assumptions {
    /// Orders per day of the shop at scale 1 (before seasonality and trend).
    pub const SHOP_ORDERS_PER_DAY: f64 = 60.0;
    /// Booking requests (service page visits that may book) per day at scale 1.
    pub const BOOKING_VISITS_PER_DAY: f64 = 40.0;
    /// Share of booking visits that book.
    pub const BOOKING_CONVERSION: f64 = 0.45;
    /// Online Retail is a B2B shop with no night orders; a consumer shop has
    /// some. The hour profile is mixed with a flat one by this share.
    pub const FLAT_HOUR_SHARE: f64 = 0.15;
    /// Appointment lead times are the hotel's divided by this.
    pub const LEAD_TIME_DIVISOR: f64 = 7.0;
    /// Appointment cancellations are the hotel's rate (by lead-time bucket) times this.
    pub const CANCELLATION_FACTOR: f64 = 0.5;
    /// Appointment no-shows are the hotel's no-show rate times this.
    pub const NO_SHOW_FACTOR: f64 = 4.0;
    /// Growth over a year (linear trend).
    pub const YEARLY_GROWTH: f64 = 0.25;
    /// Most distinct products in one order (Online Retail averages 26
    /// wholesale lines; a consumer basket is smaller, the value is kept).
    pub const MAX_ITEMS: u64 = 8;
    /// Share of checkouts whose first payment attempt fails.
    pub const PAYMENT_FAILURE_RATE: f64 = 0.03;
    /// Stock below which a product is low.
    pub const LOW_STOCK: i64 = 15;
    /// Shop customers' lifetimes, a BG/NBD process (Fader, Hardie and Lee,
    /// 2005): while alive, a customer orders again after an exponential gap
    /// whose rate is drawn per customer from a gamma distribution (shape
    /// [`PURCHASE_RATE_SHAPE`], mean one order per [`MEAN_REPURCHASE_DAYS`]),
    /// and after each order drops out for good with a probability drawn per
    /// customer from Beta([`DROPOUT_BETA`]) (mean 1/3). Over a year this
    /// leaves about 78% of orders to returning customers, near Online
    /// Retail's 76% (`repeat_customer_share`); over the first two months
    /// about 67%. Recency and frequency then predict who orders again, as
    /// in a real shop, where a memoryless choice of a returning customer
    /// made churn unpredictable (CV AUC about 0.55).
    pub const PURCHASE_RATE_SHAPE: f64 = 1.0;
    /// See [`PURCHASE_RATE_SHAPE`].
    pub const MEAN_REPURCHASE_DAYS: f64 = 3.0;
    /// See [`PURCHASE_RATE_SHAPE`]: Beta(alpha, beta) of the dropout.
    pub const DROPOUT_BETA: (f64, f64) = (1.5, 3.0);
    /// Shop sessions of new visitors are the calibrated sessions times this
    /// share; returning customers' orders come on top: about 60 orders a
    /// day at scale 1 after two months, about 85 after a year as loyal
    /// customers accumulate.
    pub const NEW_VISITOR_SHARE: f64 = 0.3;
}
use assumptions as a;

/// Generator settings.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Business time zone (days, hours and opening times are local).
    pub time_zone: Tz,
    /// Currency of all amounts.
    pub currency: String,
    /// Traffic multiplier: 1.0 is about 60 orders and 18 bookings a day.
    pub scale: f64,
    /// Where the simulated history starts (trend and anomalies are placed
    /// relative to it).
    pub start: DateTime<Utc>,
    /// Prefix of message ids (unique per generator in a workspace).
    pub id_prefix: String,
}

impl GeneratorConfig {
    /// Defaults for `seed`, starting at `start`.
    pub fn new(seed: u64, start: DateTime<Utc>) -> Self {
        Self {
            seed,
            time_zone: chrono_tz::Europe::London,
            currency: "GBP".into(),
            scale: 1.0,
            start,
            id_prefix: format!("gen{seed}"),
        }
    }
}

/// A planted anomaly, so detectors and alerts have something to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// What happens.
    pub kind: AnomalyKind,
    /// The local day it happens.
    pub date: NaiveDate,
}

/// Kinds of planted anomalies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyKind {
    /// A few very large orders: revenue far above normal.
    RevenueSpike,
    /// Shop traffic almost stops from 10:00 to 16:00.
    Outage,
    /// Many booked customers do not show up.
    NoShowSpike,
    /// A quarter of payment attempts fail.
    PaymentFailures,
}

struct Product {
    id: String,
    name: String,
    category: &'static str,
    price: Money,
    popularity: f64,
}

struct Service {
    id: &'static str,
    name: &'static str,
    price: Money,
    minutes: i64,
}

const SERVICES: [(&str, &str, i64, i64); 6] = [
    ("haircut", "Haircut", 35, 45),
    ("colour", "Colour", 85, 120),
    ("massage", "Massage 60 min", 60, 60),
    ("manicure", "Manicure", 30, 45),
    ("facial", "Facial", 55, 60),
    ("consultation", "Consultation", 0, 15),
];
/// Segment needs a userId or anonymousId on every call; stock counts come
/// from the shop's inventory system.
const INVENTORY_ACTOR: &str = "system:inventory";
const STAFF: [&str; 5] = ["alice", "bruno", "chloe", "dev", "emma"];
const LOCATIONS: [&str; 2] = ["high-street", "riverside"];
const CATEGORIES: [&str; 6] = ["home", "kitchen", "garden", "gifts", "stationery", "toys"];
const CANCEL_REASONS: [&str; 5] = [
    "schedule conflict",
    "illness",
    "found another provider",
    "price",
    "no reason given",
];
const REFUND_REASONS: [&str; 4] = ["damaged", "wrong item", "changed mind", "late delivery"];

struct Scheduled {
    at: i64,
    seq: u64,
    message: Message,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Stock of one product.
/// A shop customer's lifetime process ([`assumptions::PURCHASE_RATE_SHAPE`]).
#[derive(Debug, Clone, Copy)]
struct Life {
    /// Orders per day while alive.
    rate_per_day: f64,
    /// Probability of dropping out after each order.
    dropout: f64,
}

struct Stock {
    level: i64,
    restock_pending: bool,
}

/// The simulation.
pub struct Generator {
    cfg: GeneratorConfig,
    cal: &'static Calibration,
    rng: ChaCha8Rng,
    products: Vec<Product>,
    product_weights_total: f64,
    services: Vec<Service>,
    stock: Vec<Stock>,
    shop_customers: u64,
    /// Per shop customer (`cus_<n>` at `n - 1`): their lifetime process.
    lives: Vec<Life>,
    /// Returning customers' next visits, `(at, seq, customer number)`.
    returns: BinaryHeap<Reverse<(i64, u64, u64)>>,
    booking_clients: u64,
    visitors: u64,
    counter: u64,
    pending: BinaryHeap<Reverse<Scheduled>>,
    anomalies: Vec<Anomaly>,
    last_inventory_day: Option<NaiveDate>,
    hour_weights: [f64; 24],
    live_floor: f64,
}

impl Generator {
    /// A generator with its catalog, staff and planted anomalies.
    pub fn new(cfg: GeneratorConfig) -> Self {
        let cal: &'static Calibration = &CALIBRATION;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let price_dist = LogNormal::new(
            cal.shop.unit_price_lognormal.mu + 1.2,
            cal.shop.unit_price_lognormal.sigma,
        )
        .unwrap_or_else(|_| LogNormal::new(2.0, 0.8).expect("valid"));
        let products: Vec<Product> = (0..60)
            .map(|i| {
                let price: f64 = price_dist.sample(&mut rng).clamp(1.5, 250.0);
                Product {
                    id: format!("sku-{:04}", 1000 + i),
                    name: format!("{} item {}", CATEGORIES[i % CATEGORIES.len()], i + 1),
                    category: CATEGORIES[i % CATEGORIES.len()],
                    price: Money((price * 100.0).round() as i128 * 100),
                    // Zipf-like popularity: a few best sellers.
                    popularity: 1.0 / (i as f64 + 1.0).powf(0.9),
                }
            })
            .collect();
        let product_weights_total = products.iter().map(|p| p.popularity).sum();
        let stock = products
            .iter()
            .map(|_| Stock {
                level: rng.random_range(60..300),
                restock_pending: false,
            })
            .collect();
        let services = SERVICES
            .iter()
            .map(|&(id, name, price, minutes)| Service {
                id,
                name,
                price: Money(i128::from(price) * beacon_ingest::schema::MONEY_FACTOR),
                minutes,
            })
            .collect();
        let start_day = cfg.start.with_timezone(&cfg.time_zone).date_naive();
        let kinds = [
            AnomalyKind::RevenueSpike,
            AnomalyKind::Outage,
            AnomalyKind::NoShowSpike,
            AnomalyKind::PaymentFailures,
        ];
        let anomalies = kinds
            .iter()
            .map(|&kind| Anomaly {
                kind,
                date: start_day + Duration::days(rng.random_range(30..330)),
            })
            .collect();
        let flat = 1.0 / 24.0;
        let mut hour_weights = [0.0; 24];
        for (h, w) in hour_weights.iter_mut().enumerate() {
            *w = (1.0 - a::FLAT_HOUR_SHARE) * cal.shop.hour_weights[h] + a::FLAT_HOUR_SHARE * flat;
        }
        Self {
            cfg,
            cal,
            rng,
            products,
            product_weights_total,
            services,
            stock,
            shop_customers: 0,
            lives: Vec::new(),
            returns: BinaryHeap::new(),
            booking_clients: 0,
            visitors: 0,
            counter: 0,
            pending: BinaryHeap::new(),
            anomalies,
            last_inventory_day: None,
            hour_weights,
            live_floor: 0.0,
        }
    }

    /// The planted anomalies.
    pub fn anomalies(&self) -> &[Anomaly] {
        &self.anomalies
    }

    /// Live mode: every hour gets at least `share` of the average hour's
    /// traffic, so a dashboard watched at night still moves.
    pub fn set_live_floor(&mut self, share: f64) {
        self.live_floor = share.max(0.0);
    }

    /// The messages of `[from, to)`, in time order.
    pub fn advance(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Message> {
        let mut out = Vec::new();
        let mut slice_start = from;
        while slice_start < to {
            let next_hour = (slice_start + Duration::hours(1))
                .with_minute(0)
                .and_then(|t| t.with_second(0))
                .and_then(|t| t.with_nanosecond(0))
                .unwrap_or(to);
            let slice_end = next_hour.min(to);
            self.slice(slice_start, slice_end);
            self.drain_until(slice_end.timestamp_micros(), &mut out);
            slice_start = slice_end;
        }
        out
    }

    fn drain_until(&mut self, until_us: i64, out: &mut Vec<Message>) {
        while let Some(Reverse(top)) = self.pending.peek() {
            if top.at >= until_us {
                break;
            }
            if let Some(Reverse(s)) = self.pending.pop() {
                out.push(s.message);
            }
        }
    }

    fn next_id(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("{}-{what}-{}", self.cfg.id_prefix, self.counter)
    }

    fn schedule(&mut self, at: DateTime<Utc>, message: Message) {
        self.counter += 1;
        self.pending.push(Reverse(Scheduled {
            at: at.timestamp_micros(),
            seq: self.counter,
            message,
        }));
    }

    fn anomaly(&self, date: NaiveDate, kind: AnomalyKind) -> bool {
        self.anomalies
            .iter()
            .any(|a| a.date == date && a.kind == kind)
    }

    /// Seasonality of the local day: trend, month, holidays.
    fn day_factor(&self, date: NaiveDate, shop: bool) -> f64 {
        let days = (date
            - self
                .cfg
                .start
                .with_timezone(&self.cfg.time_zone)
                .date_naive())
        .num_days() as f64;
        let trend =
            1.0 - a::YEARLY_GROWTH / 2.0 + a::YEARLY_GROWTH * (days / 365.0).clamp(0.0, 2.0);
        let month = date.month0() as usize;
        let (md, year) = ((date.month(), date.day()), date.year());
        if shop {
            let black_friday = black_friday(year);
            let holiday = if date == black_friday {
                2.5
            } else if date == black_friday + Duration::days(3) {
                1.8
            } else if md == (12, 25) || md == (12, 26) {
                0.15
            } else if md == (12, 24) {
                0.5
            } else if date.month() == 12 && date.day() <= 20 {
                1.2
            } else {
                1.0
            };
            trend * self.cal.shop.monthly_index[month] * holiday
        } else {
            let holiday = match md {
                (12, 25) | (12, 26) | (1, 1) => 0.0,
                (2, 14) => 1.6,
                (12, 23) | (12, 22) => 1.4,
                _ => 1.0,
            };
            trend * self.cal.bookings.monthly_index[month] * holiday
        }
    }

    fn slice(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) {
        let tz = self.cfg.time_zone;
        let local = from.with_timezone(&tz);
        let date = local.date_naive();
        let hour = local.hour() as usize;
        let weekday = local.weekday().num_days_from_monday() as usize;
        let fraction = (to - from).num_milliseconds() as f64 / 3_600_000.0;
        if self.last_inventory_day != Some(date) && hour >= 6 {
            self.last_inventory_day = Some(date);
            self.inventory_snapshot(from);
        }

        // Shop sessions: orders/day / purchase share = sessions/day.
        let mut hour_share = self.hour_weights[hour];
        let weekday_share = self.cal.shop.weekday_weights_smoothed[weekday] * 7.0;
        hour_share = hour_share.max(self.live_floor / 24.0);
        let mut rate = self.cfg.scale * a::SHOP_ORDERS_PER_DAY * a::NEW_VISITOR_SHARE
            / self.cal.funnel.purchase_session_share
            * self.day_factor(date, true)
            * weekday_share
            * hour_share
            * fraction;
        let outage = self.anomaly(date, AnomalyKind::Outage) && (10..16).contains(&hour);
        if outage {
            rate *= 0.05;
        }
        for _ in 0..self.poisson(rate) {
            let at = self.uniform_time(from, to);
            self.shop_session(at, date, None);
        }
        // Returning customers whose next visit falls in this slice (a visit
        // may plan another one inside it). The shop being down, they come
        // back a few hours later.
        let to_us = to.timestamp_micros();
        while let Some(&Reverse((at_us, _, customer))) = self.returns.peek() {
            if at_us >= to_us {
                break;
            }
            self.returns.pop();
            let at = DateTime::<Utc>::from_timestamp_micros(at_us).unwrap_or(from).max(from);
            if outage {
                let later = at + Duration::hours(self.rng.random_range(6..30));
                self.plan_visit(customer, later);
                continue;
            }
            self.shop_session(at, date, Some(customer));
        }
        if self.anomaly(date, AnomalyKind::RevenueSpike) && hour == 11 && local.minute() == 0 {
            for _ in 0..3 {
                let at = self.uniform_time(from, to);
                self.wholesale_order(at);
            }
        }

        // Booking visits, during opening-ish hours of the booking site.
        let booking_weekday = self.cal.bookings.weekday_weights[weekday] * 7.0;
        let booking_rate = self.cfg.scale
            * a::BOOKING_VISITS_PER_DAY
            * self.day_factor(date, false)
            * booking_weekday
            * hour_share
            * fraction;
        for _ in 0..self.poisson(booking_rate) {
            let at = self.uniform_time(from, to);
            self.booking_visit(at, date);
        }
    }

    fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        Poisson::new(lambda)
            .map(|p| p.sample(&mut self.rng) as u64)
            .unwrap_or(0)
    }

    fn uniform_time(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> DateTime<Utc> {
        let span = (to - from).num_microseconds().unwrap_or(1).max(1);
        from + Duration::microseconds(self.rng.random_range(0..span))
    }

    fn pick_product(&mut self) -> usize {
        let mut x = self.rng.random::<f64>() * self.product_weights_total;
        for (i, p) in self.products.iter().enumerate() {
            x -= p.popularity;
            if x <= 0.0 {
                return i;
            }
        }
        self.products.len() - 1
    }

    fn pick<T: Copy>(&mut self, items: &[(T, f64)]) -> T {
        let total: f64 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.rng.random::<f64>() * total;
        for (item, w) in items {
            x -= w;
            if x <= 0.0 {
                return *item;
            }
        }
        items[items.len() - 1].0
    }

    fn product_props(&self, m: Message, i: usize) -> Message {
        let p = &self.products[i];
        m.prop("product_id", p.id.as_str())
            .prop("name", p.name.as_str())
            .prop("category", p.category)
            .money("price", p.price)
            .prop("currency", self.cfg.currency.as_str())
    }

    /// A new customer's lifetime: their purchase rate and dropout.
    fn new_life(&mut self) -> Life {
        let shape = a::PURCHASE_RATE_SHAPE;
        let rate_per_day = Gamma::new(shape, 1.0 / (a::MEAN_REPURCHASE_DAYS * shape))
            .map(|g| g.sample(&mut self.rng))
            .unwrap_or(1.0 / a::MEAN_REPURCHASE_DAYS);
        let dropout = Beta::new(a::DROPOUT_BETA.0, a::DROPOUT_BETA.1)
            .map(|b| b.sample(&mut self.rng))
            .unwrap_or(0.5);
        Life {
            rate_per_day,
            dropout,
        }
    }

    /// After an order of customer `n` at `t`: they drop out, or their next
    /// visit is planned an exponential gap later.
    fn after_order(&mut self, n: u64, t: DateTime<Utc>) {
        let Some(&life) = usize::try_from(n - 1).ok().and_then(|i| self.lives.get(i)) else {
            return;
        };
        if self.rng.random_bool(life.dropout.clamp(0.0, 1.0)) || life.rate_per_day <= 0.0 {
            return;
        }
        let days = Exp::new(life.rate_per_day)
            .map(|e| e.sample(&mut self.rng))
            .unwrap_or(f64::INFINITY);
        // Beyond ten years is never: the process stops there.
        if days.is_finite() && days < 3650.0 {
            let gap = Duration::seconds(((days * 86_400.0) as i64).max(3_600));
            self.plan_visit(n, t + gap);
        }
    }

    fn plan_visit(&mut self, n: u64, at: DateTime<Utc>) {
        self.counter += 1;
        self.returns
            .push(Reverse((at.timestamp_micros(), self.counter, n)));
    }

    /// A shop visit: a new visitor's (`returning` is `None`), who may buy
    /// and so become customer `cus_<n>`, or a returning customer's planned
    /// visit, which ends in an order.
    fn shop_session(&mut self, at: DateTime<Utc>, date: NaiveDate, returning: Option<u64>) {
        let f = &self.cal.funnel;
        // Sessions that end in a purchase log a cart step first here (the
        // REES46 store often skips it; a web shop's checkout does not).
        let (p_cart, p_buy_given_cart) = if returning.is_some() {
            (1.0, 1.0)
        } else {
            let p_cart =
                f.cart_session_share + f.purchase_session_share * f.purchase_without_cart_share;
            (p_cart, (f.purchase_session_share / p_cart).min(1.0))
        };
        let customer = returning.map(|n| format!("cus_{n}"));
        self.visitors += 1;
        let anonymous = format!("{}-v{}", self.cfg.id_prefix, self.visitors);
        let session = self.next_id("s");
        let mut t = at;
        let id = self.next_id("e");
        let page = Message::track(id, "Page Viewed", t)
            .page("Home")
            .person(customer.as_deref(), &anonymous)
            .prop("path", "/")
            .prop("session_id", session.as_str());
        self.schedule(t, page);
        let views = 1 + self.poisson((f.mean_views_per_session - 1.0).max(0.0));
        let mut viewed = Vec::new();
        for _ in 0..views {
            t += Duration::seconds(self.rng.random_range(15..120));
            let p = self.pick_product();
            viewed.push(p);
            let id = self.next_id("e");
            let m = Message::track(id, "Product Viewed", t)
                .person(customer.as_deref(), &anonymous)
                .prop("session_id", session.as_str());
            let m = self.product_props(m, p);
            self.schedule(t, m);
        }
        if !self.rng.random_bool(p_cart.clamp(0.0, 1.0)) {
            return;
        }
        let added = viewed[self.rng.random_range(0..viewed.len())];
        t += Duration::seconds(self.rng.random_range(10..90));
        let id = self.next_id("e");
        let m = Message::track(id, "Product Added", t)
            .person(customer.as_deref(), &anonymous)
            .prop("session_id", session.as_str())
            .prop("quantity", 1);
        let m = self.product_props(m, added);
        self.schedule(t, m);
        let buys = self.rng.random_bool(p_buy_given_cart);
        if !buys && !self.rng.random_bool(0.3) {
            return;
        }
        t += Duration::seconds(self.rng.random_range(30..300));
        let order_id = self.next_id("order");
        let id = self.next_id("e");
        let checkout = Message::track(id, "Checkout Started", t)
            .person(customer.as_deref(), &anonymous)
            .prop("session_id", session.as_str())
            .prop("order_id", order_id.as_str());
        self.schedule(t, checkout);
        if !buys {
            return;
        }
        let value = LogNormal::new(
            self.cal.shop.order_value_lognormal.mu,
            self.cal.shop.order_value_lognormal.sigma,
        )
        .map(|d| d.sample(&mut self.rng))
        .unwrap_or(300.0)
        .clamp(5.0, 5_000.0);
        let number = match returning {
            Some(n) => n,
            None => {
                let life = self.new_life();
                self.lives.push(life);
                self.shop_customers += 1;
                self.shop_customers
            }
        };
        let customer = match customer {
            Some(c) => c,
            None => {
                let c = format!("cus_{number}");
                let id = self.next_id("e");
                let traits = json!({
                    "email": format!("{c}@example.com"),
                    "name": format!("Customer {number}"),
                    "created_at": iso(t),
                });
                let Value::Object(traits) = traits else {
                    unreachable!()
                };
                self.schedule(t, Message::identify(id, &c, t, traits));
                c
            }
        };
        let failure_rate = if self.anomaly(date, AnomalyKind::PaymentFailures) {
            0.25
        } else {
            a::PAYMENT_FAILURE_RATE
        };
        let method = self.pick(&[("card", 0.7), ("paypal", 0.2), ("apple_pay", 0.1)]);
        if self.rng.random_bool(failure_rate) {
            t += Duration::seconds(20);
            let id = self.next_id("e");
            let failed = Message::track(id, "Payment Failed", t)
                .person(Some(&customer), &anonymous)
                .prop("order_id", order_id.as_str())
                .prop("payment_method", method)
                .prop("reason", "card_declined");
            self.schedule(t, failed);
        }
        t += Duration::seconds(self.rng.random_range(20..120));
        self.complete_order(
            t,
            &customer,
            &anonymous,
            &session,
            &order_id,
            value,
            method,
            Some(added),
        );
        self.after_order(number, t);
    }

    #[allow(clippy::too_many_arguments)]
    fn complete_order(
        &mut self,
        t: DateTime<Utc>,
        customer: &str,
        anonymous: &str,
        session: &str,
        order_id: &str,
        value: f64,
        method: &str,
        first: Option<usize>,
    ) {
        let lines = (1 + self.poisson(1.5)).min(a::MAX_ITEMS) as usize;
        let mut picks: Vec<usize> = first.into_iter().collect();
        while picks.len() < lines {
            let p = self.pick_product();
            if !picks.contains(&p) {
                picks.push(p);
            }
        }
        let per_line = value / lines as f64;
        let mut items = Vec::new();
        let mut revenue = Money(0);
        let mut sold = Vec::new();
        for &p in &picks {
            let price = self.products[p].price;
            let unit = price.0 as f64 / beacon_ingest::schema::MONEY_FACTOR as f64;
            let quantity = ((per_line / unit).round() as i64).clamp(1, 500);
            revenue += price.times(quantity);
            items.push(json!({
                "product_id": self.products[p].id,
                "name": self.products[p].name,
                "category": self.products[p].category,
                "price": price.json(),
                "quantity": quantity,
            }));
            sold.push((p, quantity));
        }
        let channel = self.pick(&[("web", 0.6), ("mobile", 0.3), ("marketplace", 0.1)]);
        let id = self.next_id("e");
        let order = Message::track(id, "Order Completed", t)
            .person(Some(customer), anonymous)
            .prop("session_id", session)
            .prop("order_id", order_id)
            .money("revenue", revenue)
            .prop("currency", self.cfg.currency.as_str())
            .prop("payment_method", method)
            .prop("channel", channel)
            .prop("products", Value::Array(items));
        self.schedule(t, order);
        for (p, quantity) in sold {
            self.sell(t, p, quantity);
        }
        if self
            .rng
            .random_bool(self.cal.shop.refund_rate.clamp(0.0, 1.0) * 0.5)
        {
            let later = t + Duration::hours(self.rng.random_range(24..20 * 24));
            let partial = self.rng.random_bool(0.3);
            let amount = if partial {
                Money(revenue.0 / 2)
            } else {
                revenue
            };
            let reason = REFUND_REASONS[self.rng.random_range(0..REFUND_REASONS.len())];
            let id = self.next_id("e");
            let refund = Message::track(id, "Order Refunded", later)
                .user(customer)
                .prop("order_id", order_id)
                .money("total", amount)
                .prop("currency", self.cfg.currency.as_str())
                .prop("reason", reason);
            self.schedule(later, refund);
        }
    }

    fn wholesale_order(&mut self, at: DateTime<Utc>) {
        // A one-off buyer: never returns.
        self.lives.push(Life {
            rate_per_day: 0.0,
            dropout: 1.0,
        });
        self.shop_customers += 1;
        let customer = format!("cus_{}", self.shop_customers);
        let anonymous = format!("{}-wholesale", self.cfg.id_prefix);
        let session = self.next_id("s");
        let order_id = self.next_id("order");
        let value = 12_000.0 + self.rng.random::<f64>() * 8_000.0;
        self.complete_order(
            at,
            &customer,
            &anonymous,
            &session,
            &order_id,
            value,
            "bank_transfer",
            None,
        );
    }

    fn sell(&mut self, t: DateTime<Utc>, p: usize, quantity: i64) {
        let stock = &mut self.stock[p];
        stock.level = (stock.level - quantity).max(0);
        if stock.level >= a::LOW_STOCK || stock.restock_pending {
            return;
        }
        stock.restock_pending = true;
        let level = stock.level;
        let id = self.next_id("e");
        let m = Message::track(id, "Inventory Updated", t)
            .person(None, INVENTORY_ACTOR)
            .prop("product_id", self.products[p].id.as_str())
            .prop("quantity", level)
            .prop("threshold", a::LOW_STOCK)
            .prop("reason", "sale");
        self.schedule(t, m);
        let restock_at = t + Duration::hours(self.rng.random_range(36..120));
        let new_level = self.rng.random_range(150..400);
        let id = self.next_id("e");
        let m = Message::track(id, "Inventory Updated", restock_at)
            .person(None, INVENTORY_ACTOR)
            .prop("product_id", self.products[p].id.as_str())
            .prop("quantity", new_level)
            .prop("threshold", a::LOW_STOCK)
            .prop("reason", "restock");
        self.schedule(restock_at, m);
        // The restock message carries the new level; the simulation applies
        // it now (stock arriving early only makes sales possible sooner).
        let stock = &mut self.stock[p];
        stock.level += new_level;
        stock.restock_pending = false;
    }

    fn inventory_snapshot(&mut self, at: DateTime<Utc>) {
        for p in 0..self.products.len() {
            let id = self.next_id("e");
            let m = Message::track(id, "Inventory Updated", at)
                .person(None, INVENTORY_ACTOR)
                .prop("product_id", self.products[p].id.as_str())
                .prop("quantity", self.stock[p].level)
                .prop("threshold", a::LOW_STOCK)
                .prop("reason", "daily count");
            self.schedule(at, m);
        }
    }

    fn lead_days(&mut self) -> i64 {
        let l = self.cal.bookings.lead_time_days;
        let u: f64 = self.rng.random();
        if u < l.share_zero {
            return 0;
        }
        // Piecewise-linear inverse of the quantiles (0 at p0, p90 * 1.5 at p100).
        let points = [
            (0.0, 0.0),
            (0.1, l.p10),
            (0.25, l.p25),
            (0.5, l.p50),
            (0.75, l.p75),
            (0.9, l.p90),
            (1.0, l.p90 * 1.5),
        ];
        let mut days = l.p90;
        for w in points.windows(2) {
            let ((q0, v0), (q1, v1)) = (w[0], w[1]);
            if u <= q1 {
                days = v0 + (v1 - v0) * (u - q0) / (q1 - q0);
                break;
            }
        }
        (days / a::LEAD_TIME_DIVISOR).round() as i64
    }

    fn cancellation_rate(&self, lead: i64) -> f64 {
        let hotel_lead = lead as f64 * a::LEAD_TIME_DIVISOR;
        let rate = self
            .cal
            .bookings
            .cancellation_by_lead_time
            .iter()
            .find(|b| {
                hotel_lead >= b.lead_time_min && b.lead_time_max.is_none_or(|m| hotel_lead <= m)
            })
            .map_or(0.2, |b| b.cancellation_rate);
        rate * a::CANCELLATION_FACTOR
    }

    fn booking_visit(&mut self, at: DateTime<Utc>, _date: NaiveDate) {
        let returning = self.booking_clients > 0 && self.rng.random_bool(0.55);
        let client = if returning {
            format!("cli_{}", self.rng.random_range(1..=self.booking_clients))
        } else {
            self.visitors += 1;
            format!("{}-v{}", self.cfg.id_prefix, self.visitors)
        };
        let s = self.pick(&[
            (0usize, 0.35),
            (1, 0.15),
            (2, 0.2),
            (3, 0.15),
            (4, 0.1),
            (5, 0.05),
        ]);
        let (service_id, service_name, price, minutes) = {
            let sv = &self.services[s];
            (sv.id, sv.name, sv.price, sv.minutes)
        };
        let location = LOCATIONS[self.rng.random_range(0..LOCATIONS.len())];
        let id = self.next_id("e");
        let viewed = Message::track(id, "Service Viewed", at)
            .person(returning.then_some(client.as_str()), &client)
            .prop("service_id", service_id)
            .prop("name", service_name)
            .money("price", price)
            .prop("location", location);
        self.schedule(at, viewed);
        if !self.rng.random_bool(a::BOOKING_CONVERSION) {
            return;
        }
        let client = if returning {
            client
        } else {
            self.booking_clients += 1;
            format!("cli_{}", self.booking_clients)
        };
        let created = at + Duration::seconds(self.rng.random_range(30..240));
        let lead = self.lead_days();
        let tz = self.cfg.time_zone;
        let mut day = created.with_timezone(&tz).date_naive() + Duration::days(lead);
        if day.weekday() == Weekday::Sun {
            day += Duration::days(1);
        }
        let slot = self.rng.random_range(0..18); // 09:00 .. 17:30, every 30 minutes
        let start_local = day.and_time(
            NaiveTime::from_hms_opt(9 + slot / 2, (slot % 2) * 30, 0).unwrap_or_default(),
        );
        let mut appointment = local_to_utc(start_local, tz);
        if appointment <= created {
            appointment = created + Duration::hours(2);
        }
        let staff = STAFF[self.rng.random_range(0..STAFF.len())];
        let channel = self.pick(&[("online", 0.7), ("phone", 0.2), ("walk-in", 0.1)]);
        let booking_id = self.next_id("booking");
        let currency = self.cfg.currency.clone();
        let base = |m: Message| {
            m.user(&client)
                .prop("booking_id", booking_id.as_str())
                .prop("service_id", service_id)
                .prop("staff_id", staff)
                .prop("location", location)
                .money("amount", price)
                .prop("currency", currency.as_str())
                .prop("channel", channel)
        };
        let id = self.next_id("e");
        let m = base(Message::track(id, "Booking Created", created))
            .prop("appointment_at", iso(appointment))
            .prop("lead_time_days", lead)
            .prop("duration_minutes", minutes)
            .prop("status", "booked");
        self.schedule(created, m);
        let appointment_day = appointment.with_timezone(&tz).date_naive();
        if self
            .rng
            .random_bool(self.cancellation_rate(lead).clamp(0.0, 1.0))
        {
            let span = (appointment - created).num_seconds().max(60);
            let cancelled_at = created + Duration::seconds(self.rng.random_range(30..span.max(31)));
            let reason = CANCEL_REASONS[self.rng.random_range(0..CANCEL_REASONS.len())];
            let id = self.next_id("e");
            let m = base(Message::track(id, "Booking Cancelled", cancelled_at))
                .prop("status", "cancelled")
                .prop("reason", reason);
            self.schedule(cancelled_at, m);
            return;
        }
        let mut no_show = self.cal.bookings.no_show_rate * a::NO_SHOW_FACTOR;
        if self.anomaly(appointment_day, AnomalyKind::NoShowSpike) {
            no_show = 0.4;
        }
        if self.rng.random_bool(no_show.clamp(0.0, 1.0)) {
            let t = appointment + Duration::minutes(15);
            let id = self.next_id("e");
            let m = base(Message::track(id, "Booking No Show", t)).prop("status", "no_show");
            self.schedule(t, m);
            return;
        }
        let done = appointment + Duration::minutes(minutes);
        let rating = self.pick(&[(5, 0.55), (4, 0.3), (3, 0.1), (2, 0.03), (1, 0.02)]);
        let id = self.next_id("e");
        let m = base(Message::track(id, "Booking Completed", done))
            .prop("status", "completed")
            .prop("rating", rating);
        self.schedule(done, m);
        if price.0 > 0 {
            let method = self.pick(&[("card", 0.8), ("cash", 0.2)]);
            let id = self.next_id("e");
            let m = Message::track(id, "Payment Received", done + Duration::minutes(2))
                .user(&client)
                .prop("booking_id", booking_id.as_str())
                .money("amount", price)
                .prop("currency", self.cfg.currency.as_str())
                .prop("payment_method", method)
                .prop("location", location)
                .prop("staff_id", staff);
            self.schedule(done + Duration::minutes(2), m);
        }
    }
}

/// The Friday after the fourth Thursday of November.
fn black_friday(year: i32) -> NaiveDate {
    let nov1 = NaiveDate::from_ymd_opt(year, 11, 1).unwrap_or_default();
    let offset =
        (Weekday::Thu.num_days_from_monday() + 7 - nov1.weekday().num_days_from_monday()) % 7;
    nov1 + Duration::days(i64::from(offset) + 21 + 1)
}

/// Generates `events` messages for one tenant over the year before `end`,
/// choosing the scale so the count is reached (the last messages are cut).
/// Calls `sink` with chunks of messages in time order.
pub fn generate_count(
    seed: u64,
    events: usize,
    end: DateTime<Utc>,
    mut sink: impl FnMut(Vec<Message>) -> crate::Result<()>,
) -> crate::Result<usize> {
    let start = end - Duration::days(365);
    // Measure the event rate of two weeks at scale 1, then scale.
    let probe_events = {
        let mut g = Generator::new(GeneratorConfig::new(seed, start));
        g.advance(start, start + Duration::days(14)).len().max(1)
    };
    let per_year_at_1 = probe_events as f64 / 14.0 * 365.0;
    let mut cfg = GeneratorConfig::new(seed, start);
    cfg.scale = (events as f64 / per_year_at_1 * 1.05).max(0.001);
    let mut g = Generator::new(cfg);
    let mut written = 0;
    let mut day = start;
    while written < events {
        let next = day + Duration::days(1);
        let mut chunk = g.advance(day, next);
        chunk.truncate(events - written);
        written += chunk.len();
        sink(chunk)?;
        day = next;
        if day > end + Duration::days(365) {
            break;
        }
    }
    Ok(written)
}

/// Midnight UTC of a date, for defaults.
pub fn utc_midnight(date: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn black_fridays() {
        assert_eq!(
            black_friday(2025),
            NaiveDate::from_ymd_opt(2025, 11, 28).expect("date")
        );
        assert_eq!(
            black_friday(2026),
            NaiveDate::from_ymd_opt(2026, 11, 27).expect("date")
        );
        assert_eq!(
            black_friday(2024),
            NaiveDate::from_ymd_opt(2024, 11, 29).expect("date")
        );
    }

    #[test]
    fn deterministic_and_ordered() {
        let start = utc_midnight(NaiveDate::from_ymd_opt(2025, 1, 6).expect("date"));
        let run = || {
            let mut g = Generator::new(GeneratorConfig::new(7, start));
            g.advance(start, start + Duration::days(3))
                .iter()
                .map(Message::line)
                .collect::<Vec<_>>()
        };
        let a = run();
        assert!(a.len() > 1000, "{} messages", a.len());
        for chunk in a.chunks(4096) {
            let (events, rejected) = crate::output::decode_lines(chunk).expect("decodes");
            assert_eq!(
                (events.len(), rejected),
                (chunk.len(), 0),
                "every generated message is valid"
            );
        }
        assert_eq!(a, run());
        let times: Vec<String> = a
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).expect("json")["timestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "messages are in time order"
        );
        let mut other = Generator::new(GeneratorConfig::new(8, start));
        assert_ne!(
            a,
            other
                .advance(start, start + Duration::days(3))
                .iter()
                .map(Message::line)
                .collect::<Vec<_>>()
        );
    }
}
