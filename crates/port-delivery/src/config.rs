//! How the delivery worker and the reaper behave, and how that is read from the
//! environment.

use std::time::Duration;

/// Retry schedule: the delay before attempt 1, 2, … in seconds, comma-separated;
/// fractions allowed (`0,0.2,0.5`).
pub const ENV_RETRY_SCHEDULE: &str = "PORTD_DELIVERY_RETRY_SCHEDULE";
/// Per-attempt timeout in seconds, fractions allowed.
pub const ENV_TIMEOUT: &str = "PORTD_DELIVERY_TIMEOUT_SECS";
/// How long a claimed delivery stays leased, in seconds, fractions allowed; at least
/// the attempt timeout plus [`MIN_LEASE_MARGIN`] is used whatever it says. Default: the
/// attempt timeout plus 30 s. After a replica dies, the others take its deliveries in
/// flight over once their leases expire.
pub const ENV_LEASE: &str = "PORTD_DELIVERY_LEASE_SECS";
/// Default run timeout in seconds for actions without `timeoutSeconds`; unset or `0`
/// leaves such runs alone.
pub const ENV_RUN_TIMEOUT: &str = "PORTD_RUN_TIMEOUT_SECS";
/// The worker's lease owner name; see [`DeliveryConfig::worker_id`].
pub const ENV_WORKER_ID: &str = "PORTD_DELIVERY_WORKER_ID";
/// How often the reaper looks for stale runs, in seconds.
pub const ENV_REAPER_INTERVAL: &str = "PORTD_REAPER_INTERVAL_SECS";
/// Attempts in flight at once, all organizations together.
pub const ENV_MAX_IN_FLIGHT: &str = "PORTD_DELIVERY_MAX_IN_FLIGHT";
/// Attempts in flight at once for one organization; see
/// [`DeliveryConfig::max_in_flight_per_org`].
pub const ENV_MAX_IN_FLIGHT_PER_ORG: &str = "PORTD_DELIVERY_MAX_IN_FLIGHT_PER_ORG";
/// Attempts in flight at once for one organization to one host; see
/// [`DeliveryConfig::max_in_flight_per_host`].
pub const ENV_MAX_IN_FLIGHT_PER_HOST: &str = "PORTD_DELIVERY_MAX_IN_FLIGHT_PER_HOST";

/// The least time a lease outlives an attempt's timeout, so that the store work around
/// an attempt (reading the run, recording the attempt) fits in it too.
pub const MIN_LEASE_MARGIN: Duration = Duration::from_secs(10);

/// Why a delivery configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: {value:?} is not a number of seconds")]
    NotSeconds { name: &'static str, value: String },
    #[error("{name}: must be greater than zero")]
    NotPositive { name: &'static str },
    #[error(
        "{name}: the retry schedule needs at least one delay (the one before the first attempt)"
    )]
    EmptySchedule { name: &'static str },
    #[error("{name}: must not be empty")]
    Empty { name: &'static str },
    #[error("{name}: {value:?} is not a whole number")]
    NotCount { name: &'static str, value: String },
}

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the HTTP client could not be built: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Settings of the delivery worker and the reaper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// The delay before attempt 1, 2, …, n: a delivery gets `retry_schedule.len()`
    /// attempts. Delays after the first get ±20 % jitter. The first is counted from
    /// when the delivery was written; the worker sends at once either way, because
    /// the store makes a new delivery due immediately.
    pub retry_schedule: Vec<Duration>,
    /// How long one attempt may take, answer body included.
    pub timeout: Duration,
    /// The longest `Retry-After` honoured; longer ones are cut to this.
    pub retry_after_cap: Duration,
    /// How long a claimed delivery stays leased. The worker uses at least
    /// `timeout + MIN_LEASE_MARGIN` so that it never loses a lease mid-attempt; after
    /// a crash, the crashed worker's deliveries are claimed again once this passes.
    pub lease: Duration,
    /// The lease owner name. Unique per process by default; a server that wants to
    /// take its own leases back after a restart may make it stable, but two live
    /// workers must never share one.
    pub worker_id: String,
    /// The timeout of runs whose action sets no `timeoutSeconds`; `None` leaves them
    /// `IN_PROGRESS` until their backend reports.
    pub run_timeout_default: Option<Duration>,
    /// How often the reaper looks for stale runs.
    pub reaper_interval: Duration,
    /// How many attempts are in flight at once, all organizations together. This and
    /// the caps below are per worker (per portd process): with several replicas, an
    /// organization may have its share in flight on each.
    pub max_in_flight: usize,
    /// How many of one organization's attempts are in flight at once, so that one
    /// organization's receivers that never answer hold at most this many slots and the
    /// others keep theirs. Each free slot goes to the organization with the fewest
    /// attempts in flight, so a backlog starves no one either. Default:
    /// half of `max_in_flight`.
    pub max_in_flight_per_org: usize,
    /// How many of one organization's attempts to one destination (`host:port` of the
    /// URL) are in flight at once, so that one hanging receiver leaves the
    /// organization's other receivers some slots. Counted per organization: another
    /// organization's receiver on the same host never waits for these. Default: half of
    /// `max_in_flight_per_org`.
    pub max_in_flight_per_host: usize,
    /// The longest the worker sleeps without looking at the store. Wake-ups from the
    /// hub and the store's next due time come first; this covers deliveries written by
    /// other replicas (PostgreSQL) and leases that expire.
    pub safety_poll: Duration,
}

fn default_worker_id() -> String {
    format!("portd-{}-{:08x}", std::process::id(), rand::random::<u32>())
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let timeout = Duration::from_secs(30);
        Self {
            retry_schedule: [0, 5, 30, 120, 600, 1800]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            timeout,
            retry_after_cap: Duration::from_secs(600),
            lease: timeout + Duration::from_secs(30),
            worker_id: default_worker_id(),
            run_timeout_default: None,
            reaper_interval: Duration::from_secs(15),
            max_in_flight: 32,
            max_in_flight_per_org: 16,
            max_in_flight_per_host: 8,
            safety_poll: Duration::from_secs(1),
        }
    }
}

impl DeliveryConfig {
    /// Reads the `PORTD_*` variables over the defaults (see the `ENV_*` constants).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Self::from_env`], reading variables through `lookup`; for tests and for
    /// servers that merge several sources.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(value) = set(ENV_RETRY_SCHEDULE) {
            config.retry_schedule = parse_schedule(ENV_RETRY_SCHEDULE, &value)?;
        }
        if let Some(value) = set(ENV_TIMEOUT) {
            config.timeout = parse_seconds(ENV_TIMEOUT, &value)?;
            if config.timeout.is_zero() {
                return Err(ConfigError::NotPositive { name: ENV_TIMEOUT });
            }
            config.lease = config.timeout + Duration::from_secs(30);
        }
        if let Some(value) = set(ENV_LEASE) {
            config.lease = parse_seconds(ENV_LEASE, &value)?;
        }
        if let Some(value) = set(ENV_RUN_TIMEOUT) {
            let timeout = parse_seconds(ENV_RUN_TIMEOUT, &value)?;
            config.run_timeout_default = (!timeout.is_zero()).then_some(timeout);
        }
        if let Some(value) = set(ENV_REAPER_INTERVAL) {
            config.reaper_interval = parse_seconds(ENV_REAPER_INTERVAL, &value)?;
        }
        if let Some(value) = set(ENV_WORKER_ID) {
            config.worker_id = value.trim().to_owned();
        }
        // Unset caps follow the one above them: half of it.
        if let Some(value) = set(ENV_MAX_IN_FLIGHT) {
            config.max_in_flight = parse_count(ENV_MAX_IN_FLIGHT, &value)?;
            config.max_in_flight_per_org = (config.max_in_flight / 2).max(1);
        }
        if let Some(value) = set(ENV_MAX_IN_FLIGHT_PER_ORG) {
            config.max_in_flight_per_org = parse_count(ENV_MAX_IN_FLIGHT_PER_ORG, &value)?;
        }
        config.max_in_flight_per_host = (config.max_in_flight_per_org / 2).max(1);
        if let Some(value) = set(ENV_MAX_IN_FLIGHT_PER_HOST) {
            config.max_in_flight_per_host = parse_count(ENV_MAX_IN_FLIGHT_PER_HOST, &value)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what the worker relies on: a non-empty schedule and positive durations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.retry_schedule.is_empty() {
            return Err(ConfigError::EmptySchedule {
                name: "retry_schedule",
            });
        }
        let positive = [
            ("timeout", self.timeout),
            ("reaper_interval", self.reaper_interval),
            ("safety_poll", self.safety_poll),
        ];
        if let Some((name, _)) = positive.into_iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::NotPositive { name });
        }
        let caps = [
            ("max_in_flight", self.max_in_flight),
            ("max_in_flight_per_org", self.max_in_flight_per_org),
            ("max_in_flight_per_host", self.max_in_flight_per_host),
        ];
        if let Some((name, _)) = caps.into_iter().find(|(_, cap)| *cap == 0) {
            return Err(ConfigError::NotPositive { name });
        }
        if self.worker_id.is_empty() {
            return Err(ConfigError::Empty { name: "worker_id" });
        }
        Ok(())
    }

    /// The lease the worker takes: [`Self::lease`], raised to outlive an attempt.
    pub fn effective_lease(&self) -> Duration {
        self.lease.max(self.timeout + MIN_LEASE_MARGIN)
    }

    /// How many attempts a delivery gets.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.retry_schedule.len()).unwrap_or(u32::MAX)
    }
}

fn parse_seconds(name: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let not_seconds = || ConfigError::NotSeconds {
        name,
        value: value.to_owned(),
    };
    let secs: f64 = value.trim().parse().map_err(|_| not_seconds())?;
    // Rejects negatives, NaN, infinities and values too large for a Duration.
    Duration::try_from_secs_f64(secs).map_err(|_| not_seconds())
}

fn parse_count(name: &'static str, value: &str) -> Result<usize, ConfigError> {
    let count: usize = value.trim().parse().map_err(|_| ConfigError::NotCount {
        name,
        value: value.to_owned(),
    })?;
    if count == 0 {
        return Err(ConfigError::NotPositive { name });
    }
    Ok(count)
}

fn parse_schedule(name: &'static str, value: &str) -> Result<Vec<Duration>, ConfigError> {
    let schedule = value
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| parse_seconds(name, part))
        .collect::<Result<Vec<_>, _>>()?;
    if schedule.is_empty() {
        return Err(ConfigError::EmptySchedule { name });
    }
    Ok(schedule)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<DeliveryConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        DeliveryConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_issue() {
        let config = from(&[]).unwrap();
        let secs: Vec<u64> = config
            .retry_schedule
            .iter()
            .map(Duration::as_secs)
            .collect();
        assert_eq!(secs, [0, 5, 30, 120, 600, 1800]);
        assert_eq!(config.timeout, Duration::from_secs(30));
        assert_eq!(config.run_timeout_default, None);
        assert!(config.effective_lease() >= config.timeout + MIN_LEASE_MARGIN);
        assert!(config.worker_id.starts_with("portd-"));
        assert_eq!(
            (
                config.max_in_flight,
                config.max_in_flight_per_org,
                config.max_in_flight_per_host
            ),
            (32, 16, 8)
        );
        assert_eq!(
            config,
            DeliveryConfig {
                worker_id: config.worker_id.clone(),
                ..DeliveryConfig::default()
            }
        );
    }

    #[test]
    fn in_flight_caps_are_read_and_follow_each_other() {
        let caps = |vars: &[(&str, &str)]| {
            from(vars).map(|c| {
                (
                    c.max_in_flight,
                    c.max_in_flight_per_org,
                    c.max_in_flight_per_host,
                )
            })
        };
        assert_eq!(caps(&[(ENV_MAX_IN_FLIGHT, "100")]), Ok((100, 50, 25)));
        assert_eq!(caps(&[(ENV_MAX_IN_FLIGHT_PER_ORG, "6")]), Ok((32, 6, 3)));
        assert_eq!(
            caps(&[
                (ENV_MAX_IN_FLIGHT, "1"),
                (ENV_MAX_IN_FLIGHT_PER_HOST, " 4 ")
            ]),
            Ok((1, 1, 4))
        );
        assert_eq!(
            caps(&[(ENV_MAX_IN_FLIGHT_PER_ORG, "0")]),
            Err(ConfigError::NotPositive {
                name: ENV_MAX_IN_FLIGHT_PER_ORG
            })
        );
        assert_eq!(
            caps(&[(ENV_MAX_IN_FLIGHT_PER_HOST, "2.5")]),
            Err(ConfigError::NotCount {
                name: ENV_MAX_IN_FLIGHT_PER_HOST,
                value: "2.5".into()
            })
        );
        assert_eq!(
            caps(&[(ENV_MAX_IN_FLIGHT, "-3")]),
            Err(ConfigError::NotCount {
                name: ENV_MAX_IN_FLIGHT,
                value: "-3".into()
            })
        );
        let zero = DeliveryConfig {
            max_in_flight_per_host: 0,
            ..DeliveryConfig::default()
        };
        assert_eq!(
            zero.validate(),
            Err(ConfigError::NotPositive {
                name: "max_in_flight_per_host"
            })
        );
    }

    #[test]
    fn fractions_are_read() {
        let config = from(&[
            (ENV_RETRY_SCHEDULE, "0, 0.2,0.5"),
            (ENV_TIMEOUT, "1.5"),
            (ENV_RUN_TIMEOUT, "90"),
            (ENV_WORKER_ID, " node-a "),
        ])
        .unwrap();
        assert_eq!(
            config.retry_schedule,
            [
                Duration::ZERO,
                Duration::from_millis(200),
                Duration::from_millis(500)
            ]
        );
        assert_eq!(config.timeout, Duration::from_millis(1500));
        assert_eq!(config.lease, Duration::from_millis(31_500));
        assert_eq!(config.run_timeout_default, Some(Duration::from_secs(90)));
        assert_eq!(config.worker_id, "node-a");
        assert_eq!(config.max_attempts(), 3);
    }

    #[test]
    fn zero_run_timeout_means_off() {
        assert_eq!(
            from(&[(ENV_RUN_TIMEOUT, "0")]).unwrap().run_timeout_default,
            None
        );
    }

    #[test]
    fn bad_values_are_typed_errors() {
        assert_eq!(
            from(&[(ENV_RETRY_SCHEDULE, "0,soon")]),
            Err(ConfigError::NotSeconds {
                name: ENV_RETRY_SCHEDULE,
                value: "soon".into()
            })
        );
        assert_eq!(
            from(&[(ENV_RETRY_SCHEDULE, " , ")]),
            Err(ConfigError::EmptySchedule {
                name: ENV_RETRY_SCHEDULE
            })
        );
        assert_eq!(
            from(&[(ENV_TIMEOUT, "-1")]),
            Err(ConfigError::NotSeconds {
                name: ENV_TIMEOUT,
                value: "-1".into()
            })
        );
        assert_eq!(
            from(&[(ENV_TIMEOUT, "0")]),
            Err(ConfigError::NotPositive { name: ENV_TIMEOUT })
        );
        assert_eq!(
            from(&[(ENV_RUN_TIMEOUT, "NaN")]),
            Err(ConfigError::NotSeconds {
                name: ENV_RUN_TIMEOUT,
                value: "NaN".into()
            })
        );
        assert_eq!(
            from(&[(ENV_REAPER_INTERVAL, "0")]),
            Err(ConfigError::NotPositive {
                name: "reaper_interval"
            })
        );
    }

    #[test]
    fn the_lease_outlives_an_attempt() {
        let config = DeliveryConfig {
            timeout: Duration::from_secs(120),
            lease: Duration::from_secs(5),
            ..DeliveryConfig::default()
        };
        assert_eq!(
            config.effective_lease(),
            Duration::from_secs(120) + MIN_LEASE_MARGIN
        );
    }

    #[test]
    fn the_lease_is_read_after_the_timeout_it_would_follow() {
        let config = from(&[(ENV_TIMEOUT, "2"), (ENV_LEASE, "12.5")]).unwrap();
        assert_eq!(config.lease, Duration::from_millis(12_500));
        assert_eq!(config.effective_lease(), Duration::from_millis(12_500));
        let short = from(&[(ENV_TIMEOUT, "2"), (ENV_LEASE, "1")]).unwrap();
        assert_eq!(
            short.effective_lease(),
            Duration::from_secs(2) + MIN_LEASE_MARGIN
        );
        assert_eq!(
            from(&[(ENV_TIMEOUT, "2")]).unwrap().lease,
            Duration::from_secs(32)
        );
        assert!(matches!(
            from(&[(ENV_LEASE, "soon")]),
            Err(ConfigError::NotSeconds {
                name: ENV_LEASE,
                ..
            })
        ));
    }
}
