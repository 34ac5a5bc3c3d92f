//! The neutral measurement data that `load`, `bench` and `report` share: result file
//! schemas, HdrHistogram text and interval-log formats, and UTC dates. Imports
//! nothing else of ringmux but [`crate::sysinfo`]; opens no socket.
//!
//! - [`schema`]: the JSON result files (`ringmux.load/1`, `ringmux.bench/1`), with
//!   their parts [`profile`] (`bench --profile`) and [`models`] (`bench --preset models`).
//! - [`stats`]: the median over runs.
//! - [`hgrm`]: percentile distribution text (HdrHistogram plotter, wrk2 dialect).
//! - [`hlog`]: HdrHistogram interval logs v1.3 (write, read).
//! - [`outcome`]: what a load run produced (figures, histograms, interval series) and
//!   the files it is written to.
//! - [`time`]: UTC dates as the reports and the interval logs write them.

pub mod hgrm;
pub mod hlog;
pub mod models;
pub mod outcome;
pub mod profile;
pub mod schema;
pub mod stats;
pub mod time;
