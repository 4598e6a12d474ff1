//! Beacon's SQL functions, registered in every workspace session.

mod currency;
pub mod funnel;
mod grouped;
mod percentile;
pub mod retention;
pub mod single_phase;
pub mod time;

use arrow::array::{ArrayRef, AsArray, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{Result, exec_err};
use datafusion::prelude::SessionContext;

/// Registers every Beacon function in `ctx`; time functions use `calendar`.
pub fn register(ctx: &SessionContext, calendar: time::BusinessCalendar, currency: &str) {
    ctx.register_udf(currency::business_currency(currency));
    ctx.register_udaf(funnel::window_funnel());
    ctx.register_udaf(funnel::funnel_steps());
    ctx.register_udaf(retention::retention(calendar));
    ctx.register_udaf(percentile::percentile_cont());
    for f in time::functions(calendar) {
        ctx.register_udf(f);
    }
}

/// A timestamp (any unit) or Int64 column as microseconds since the epoch.
pub(crate) fn timestamps_us(array: &ArrayRef) -> Result<Int64Array> {
    let micros = match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .reinterpret_cast::<Int64Type>(),
        DataType::Int64 => array.as_primitive::<Int64Type>().clone(),
        DataType::Timestamp(_, _) => {
            cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?
                .as_primitive::<TimestampMicrosecondType>()
                .reinterpret_cast::<Int64Type>()
        }
        other => return exec_err!("expected a timestamp, got {other}"),
    };
    Ok(micros)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// Events of three people split over two partitions, so the aggregate's
    /// partial states are merged.
    fn context() -> SessionContext {
        context_with(SessionContext::new_with_config(
            SessionConfig::new().with_target_partitions(4),
        ))
    }

    /// The same table in `ctx`.
    fn context_with(ctx: SessionContext) -> SessionContext {
        super::register(&ctx, super::time::BusinessCalendar::default(), "USD");
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, true),
            Field::new("event", DataType::Utf8, true),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]));
        let batch = |rows: &[(&str, &str, i64)]| {
            let users: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
            let events: ArrayRef =
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1)));
            let ts: ArrayRef = Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.2 * 1_000_000))
                    .with_timezone("UTC"),
            );
            RecordBatch::try_new(Arc::clone(&schema), vec![users, events, ts]).expect("batch")
        };
        let p1 = batch(&[
            ("ann", "view", 0),
            ("bob", "view", 0),
            ("ann", "refund", 5),
            ("cid", "view", 0),
        ]);
        let p2 = batch(&[
            ("ann", "cart", 10),
            ("ann", "buy", 20),
            ("bob", "cart", 30),
            ("cid", "buy", 5),
        ]);
        let table = MemTable::try_new(schema.clone(), vec![vec![p1], vec![p2]]).expect("table");
        ctx.register_table("events", Arc::new(table))
            .expect("register");
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx
            .sql(sql)
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
        pretty_format_batches(&batches).expect("format").to_string()
    }

    /// `percentile_cont ... WITHIN GROUP` in an aggregation with so many
    /// groups that the partial phase is skipped (every row turned into a
    /// state): DataFusion's own accumulator panicked there.
    #[tokio::test]
    async fn percentile_cont_when_partial_aggregation_is_skipped() {
        let mut config = SessionConfig::new().with_target_partitions(4);
        config
            .options_mut()
            .execution
            .skip_partial_aggregation_probe_rows_threshold = 1;
        config
            .options_mut()
            .execution
            .skip_partial_aggregation_probe_ratio_threshold = 0.0;
        let ctx = context_with(SessionContext::new_with_config(config));
        // 1000 groups of 100 values, in batches over four partitions.
        let sql = "SELECT count(*) AS groups, count(*) FILTER (WHERE p = m) AS equal, \
                          sum(p90) AS p90s \
                   FROM (SELECT k, percentile_cont(0.5) WITHIN GROUP (ORDER BY t) AS p, \
                                percentile_cont(0.9) WITHIN GROUP (ORDER BY t) AS p90, median(t) AS m \
                         FROM (SELECT value % 1000 AS k, CAST(value AS DOUBLE) AS t \
                               FROM generate_series(1, 100000)) GROUP BY k)";
        let analyzed = run(&ctx, &format!("EXPLAIN ANALYZE {sql}")).await;
        assert!(analyzed.contains("mode=Partial"), "{analyzed}");
        assert!(
            !analyzed.contains("skipped_aggregation_rows=0,"),
            "{analyzed}"
        );
        // Group k holds k, k + 1000, ..., k + 99000 (k = 0: 1000 to 100000):
        // its 0.9 quantile is the value at rank 89.1 of 0..99, i.e.
        // first + 89100; summed: 1000 * 89100 + (1 + ... + 999) + 1000 (k = 0 starts at 1000).
        let expected = [
            "+--------+-------+------------+",
            "| groups | equal | p90s       |",
            "+--------+-------+------------+",
            "| 1000   | 1000  | 89600500.0 |",
            "+--------+-------+------------+",
        ];
        assert_eq!(run(&ctx, sql).await, expected.join("\n"));
    }

    /// The engine's one-phase plan for row-collecting aggregates gives the
    /// same answers as DataFusion's two-phase plan (which the other tests
    /// here run, merging partial states).
    #[tokio::test]
    async fn single_phase_plan_same_answers() {
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(4))
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(super::single_phase::SinglePhaseRowAggregates))
            .build();
        let one = context_with(SessionContext::new_with_state(state));
        let two = context();
        for sql in [
            "SELECT user_id, window_funnel(60, 'sequential', timestamp, event = 'view', event = 'cart', event = 'buy') AS level \
             FROM events GROUP BY user_id ORDER BY user_id",
            "SELECT upper(user_id) AS u, funnel_steps(60, 'any', timestamp, event = 'refund', event = 'view', event = 'cart') AS s \
             FROM events GROUP BY 1 ORDER BY 1",
            "SELECT user_id, retention(timestamp, 'day', 'recurring', event = 'view', event <> 'view') AS r \
             FROM events GROUP BY user_id ORDER BY user_id",
        ] {
            assert_eq!(run(&one, sql).await, run(&two, sql).await, "{sql}");
            let plan = run(&one, &format!("EXPLAIN {sql}")).await;
            assert!(plan.contains("mode=SinglePartitioned"), "{plan}");
            assert!(!plan.contains("mode=Partial"), "{plan}");
            // Keys and arguments are computed once, below the repartition.
            assert!(plan.contains("__arg"), "{plan}");
        }
        // Other aggregates keep the two-phase plan.
        let plan = run(
            &one,
            "EXPLAIN SELECT user_id, count(*) FROM events GROUP BY user_id",
        )
        .await;
        assert!(plan.contains("mode=Partial"), "{plan}");
    }

    #[tokio::test]
    async fn window_funnel_in_sql() {
        let ctx = context();
        let out = run(
            &ctx,
            "SELECT user_id, window_funnel(60, 'sequential', timestamp, event = 'view', event = 'cart', event = 'buy') AS level \
             FROM events GROUP BY user_id ORDER BY user_id",
        )
        .await;
        assert_eq!(
            out.lines()
                .filter(|l| l.starts_with("| "))
                .skip(1)
                .map(str::to_owned)
                .collect::<Vec<_>>(),
            vec![
                "| ann     | 3     |",
                "| bob     | 2     |",
                "| cid     | 1     |"
            ],
            "{out}"
        );
        // Window of 15 s: ann reaches cart (10 s) but not buy (20 s).
        let out = run(
            &ctx,
            "SELECT window_funnel(15, 'strict', timestamp, event = 'view', event = 'cart', event = 'buy') AS level, count(*) AS n \
             FROM events GROUP BY user_id ORDER BY user_id",
        )
        .await;
        // (level, events of the person): ann 2 of 4 rows, bob and cid 1.
        assert!(
            out.contains("| 2     | 4 |") && out.matches("| 1     | 2 |").count() == 2,
            "{out}"
        );
    }

    #[tokio::test]
    async fn funnel_steps_and_exclusion_in_sql() {
        let ctx = context();
        let out = run(
            &ctx,
            "SELECT user_id, CASE WHEN s IS NULL THEN 'excluded' ELSE array_to_string(s, ',') END AS steps FROM ( \
               SELECT user_id, funnel_steps(60, 'sequential', timestamp, event = 'refund', event = 'view', event = 'cart') AS s \
               FROM events GROUP BY user_id) ORDER BY user_id",
        )
        .await;
        let rows: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with("| "))
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        // ann refunded between view and cart: excluded; bob converted in 30 s.
        assert_eq!(
            rows,
            vec!["| ann | excluded |", "| bob | 0,30 |", "| cid | 0 |"],
            "{out}"
        );
    }

    #[tokio::test]
    async fn bad_arguments_are_plan_errors() {
        let ctx = context();
        for (sql, expected) in [
            (
                "SELECT window_funnel(60, 'sequential', timestamp) FROM events",
                "at least one step",
            ),
            (
                "SELECT window_funnel(60, 'sideways', timestamp, event = 'view') FROM events",
                "unknown mode",
            ),
            (
                "SELECT window_funnel('x', 'strict', timestamp, event = 'view') FROM events",
                "window",
            ),
            (
                "SELECT window_funnel(60, 'strict', event, event = 'view') FROM events",
                "timestamp",
            ),
            (
                "SELECT window_funnel(60, 'strict', timestamp, event) FROM events",
                "boolean",
            ),
        ] {
            let result = match ctx.sql(sql).await {
                Ok(df) => df.collect().await.map(|_| ()),
                Err(e) => Err(e),
            };
            let err = result.expect_err(sql).to_string();
            assert!(err.contains(expected), "{sql}: {err}");
        }
    }

    #[tokio::test]
    async fn retention_first_and_recurring() {
        let ctx = SessionContext::new();
        super::register(&ctx, super::time::BusinessCalendar::default(), "USD");
        const DAY: i64 = 86_400;
        let rows: [(&str, &str, i64); 6] = [
            ("ann", "buy", 0),
            ("ann", "buy", 2 * DAY),
            ("ann", "buy", 2 * DAY + 60),
            ("bob", "visit", 0),
            ("bob", "buy", DAY),
            ("bob", "buy", 3 * DAY),
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, true),
            Field::new("event", DataType::Utf8, true),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]));
        let users: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
        let events: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1)));
        let ts: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.2 * 1_000_000))
                .with_timezone("UTC"),
        );
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), vec![users, events, ts]).expect("batch");
        ctx.register_table(
            "events",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("table")),
        )
        .expect("register");
        let cells = |mode: &str| {
            format!(
                "SELECT user_id, CAST(get_field(r, 'cohort') AS VARCHAR) AS c, get_field(r, 'period') AS p FROM ( \
                   SELECT user_id, unnest(retention(timestamp, 'day', '{mode}', event = 'buy', event = 'buy')) AS r \
                   FROM events GROUP BY user_id) ORDER BY 1, 2, 3"
            )
        };
        let flat = |out: String| -> Vec<String> {
            out.lines()
                .filter(|l| l.starts_with("| "))
                .skip(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect()
        };
        assert_eq!(
            flat(run(&ctx, &cells("first")).await),
            vec![
                "| ann | 1970-01-01 | 0 |",
                "| ann | 1970-01-01 | 2 |",
                "| bob | 1970-01-02 | 0 |",
                "| bob | 1970-01-02 | 2 |",
            ]
        );
        // Recurring: every day with a purchase starts a cohort; returns count from there on.
        assert_eq!(
            flat(run(&ctx, &cells("recurring")).await),
            vec![
                "| ann | 1970-01-01 | 0 |",
                "| ann | 1970-01-01 | 2 |",
                "| ann | 1970-01-03 | 0 |",
                "| bob | 1970-01-02 | 0 |",
                "| bob | 1970-01-02 | 2 |",
                "| bob | 1970-01-04 | 0 |",
            ]
        );
    }
}
