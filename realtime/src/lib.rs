//! Beacon's real-time side: the WebSocket/SSE hub, live metrics, alert rules
//! and their state machine, and notification delivery.
//!
//! Nothing is built here yet: the hub is issue 6 and alerts/notifications are
//! issue 7. The crate exists so the workspace layout and the dependency
//! direction (`api -> realtime -> forecasting/engine -> ingest`) are fixed
//! from the start. The ingest side already publishes what the hub will
//! consume: `beacon_ingest::Store::subscribe` (a bounded feed of accepted
//! batches).
