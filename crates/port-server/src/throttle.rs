//! Throttling of failed attempts on the token route (`POST /v1/auth/access_token`).
//!
//! Failed attempts (a wrong secret or an unknown client id) drain three kinds of
//! buckets, each refilling at a steady rate ([`LoginPolicy`]):
//!
//! - **per client id and source address**: the tight bound on guessing one client's
//!   secret from one place (10 failures, then one every 6 s);
//! - **per source address**, whatever the client id: an address inventing client ids,
//!   or trying many, gets no further (30 failures, then one a second);
//! - **per client id**, whatever the address: a looser bound on guessing from many
//!   addresses (100 failures, then two a second). So that failing against someone
//!   else's client id cannot lock its owner out, this bound does not apply to an
//!   address that presented that client id's right secret within the last 24 hours.
//!
//! An attempt is refused (429 `too_many_requests`, with `Retry-After`) **before its
//! secret is checked** while one of its buckets is empty, so a throttled guesser learns
//! nothing, not even whether its guess was right. Successful attempts drain nothing.
//!
//! Addresses are IPv4 addresses or IPv6 /64 prefixes (one subscriber's allocation);
//! client ids are kept as keyed 64-bit hashes, so an id's length costs nothing. Every
//! table has a fixed capacity: when one is full, buckets that have refilled (they hold
//! no information) are dropped, then the fullest remaining one, so invented client ids
//! and rotating addresses cannot grow memory. Behind a reverse proxy every client has
//! the proxy's address: the per-address bounds then apply to all clients together.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hash};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A bucket: up to `burst` failures at once, then one per `refill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub burst: u32,
    pub refill: Duration,
}

/// The throttle's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginPolicy {
    pub per_client_and_address: Allowance,
    pub per_address: Allowance,
    pub per_client: Allowance,
    /// How long an address that logged in as a client stays exempt from that client's
    /// own (per client id) bound.
    pub known_address_for: Duration,
    /// Entries each table keeps at most.
    pub capacity: usize,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        Self {
            per_client_and_address: Allowance {
                burst: 10,
                refill: Duration::from_secs(6),
            },
            per_address: Allowance {
                burst: 30,
                refill: Duration::from_secs(1),
            },
            per_client: Allowance {
                burst: 100,
                refill: Duration::from_millis(500),
            },
            known_address_for: Duration::from_secs(24 * 60 * 60),
            capacity: 10_000,
        }
    }
}

/// Where an attempt came from: an IPv4 address, an IPv6 /64, or unknown (a router
/// driven in process, with no socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4(u32),
    V6Prefix(u64),
    Unknown,
}

impl From<Option<IpAddr>> for Source {
    fn from(address: Option<IpAddr>) -> Self {
        match address.map(|a| a.to_canonical()) {
            Some(IpAddr::V4(v4)) => Self::V4(u32::from(v4)),
            Some(IpAddr::V6(v6)) => Self::V6Prefix((u128::from(v6) >> 64) as u64),
            None => Self::Unknown,
        }
    }
}

/// A client id, hashed with this process's random key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ClientKey(u64);

/// Failures drained so far, as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures still allowed (fractions refill continuously).
    left: f64,
    at: Instant,
}

impl Bucket {
    fn full(allowance: Allowance, now: Instant) -> Self {
        Self {
            left: f64::from(allowance.burst),
            at: now,
        }
    }

    /// The allowance left at `now`.
    fn left_at(&self, allowance: Allowance, now: Instant) -> f64 {
        let refilled = now.saturating_duration_since(self.at).as_secs_f64()
            / allowance.refill.as_secs_f64().max(f64::EPSILON);
        (self.left + refilled).min(f64::from(allowance.burst))
    }

    /// How long until one more failure is allowed; `None` when one is allowed now.
    fn wait(&self, allowance: Allowance, now: Instant) -> Option<Duration> {
        let left = self.left_at(allowance, now);
        (left < 1.0).then(|| allowance.refill.mul_f64(1.0 - left))
    }

    fn drain(&mut self, allowance: Allowance, now: Instant) {
        self.left = (self.left_at(allowance, now) - 1.0).max(0.0);
        self.at = now;
    }
}

/// A bounded map of buckets.
#[derive(Debug)]
struct Buckets<K> {
    allowance: Allowance,
    map: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Copy> Buckets<K> {
    fn new(allowance: Allowance) -> Self {
        Self {
            allowance,
            map: HashMap::new(),
        }
    }

    fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        self.map.get(key)?.wait(self.allowance, now)
    }

    fn drain(&mut self, key: K, now: Instant, capacity: usize) {
        if !self.map.contains_key(&key) && self.map.len() >= capacity {
            self.make_room(now, capacity);
        }
        let allowance = self.allowance;
        self.map
            .entry(key)
            .or_insert_with(|| Bucket::full(allowance, now))
            .drain(allowance, now);
    }

    /// Drops refilled buckets; if none had, the one closest to refilled.
    fn make_room(&mut self, now: Instant, capacity: usize) {
        let allowance = self.allowance;
        let full = f64::from(allowance.burst);
        self.map.retain(|_, b| b.left_at(allowance, now) < full);
        if self.map.len() >= capacity
            && let Some(key) = self
                .map
                .iter()
                .max_by(|a, b| {
                    a.1.left_at(allowance, now)
                        .total_cmp(&b.1.left_at(allowance, now))
                })
                .map(|(k, _)| *k)
        {
            self.map.remove(&key);
        }
    }
}

#[derive(Debug)]
struct Tables {
    per_client_and_address: Buckets<(ClientKey, Source)>,
    per_address: Buckets<Source>,
    per_client: Buckets<ClientKey>,
    /// (client, address) → when that address last logged in as that client.
    known: HashMap<(ClientKey, Source), Instant>,
}

/// The token route's throttle; see the module.
#[derive(Debug)]
pub struct LoginThrottle {
    policy: LoginPolicy,
    hasher: std::collections::hash_map::RandomState,
    tables: Mutex<Tables>,
}

/// One attempt's keys.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    client: ClientKey,
    source: Source,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(LoginPolicy::default())
    }
}

impl LoginThrottle {
    pub fn new(policy: LoginPolicy) -> Self {
        let tables = Tables {
            per_client_and_address: Buckets::new(policy.per_client_and_address),
            per_address: Buckets::new(policy.per_address),
            per_client: Buckets::new(policy.per_client),
            known: HashMap::new(),
        };
        Self {
            policy,
            hasher: std::collections::hash_map::RandomState::new(),
            tables: Mutex::new(tables),
        }
    }

    /// The keys of an attempt as `client_id` from `source`.
    pub fn attempt(&self, client_id: &str, source: Source) -> Attempt {
        Attempt {
            client: ClientKey(self.hasher.hash_one(client_id)),
            source,
        }
    }

    /// `Err(wait)` when the attempt must be refused without checking its secret.
    pub fn check(&self, attempt: Attempt, now: Instant) -> Result<(), Duration> {
        let tables = self.lock();
        let mut waits = vec![
            tables
                .per_client_and_address
                .wait(&(attempt.client, attempt.source), now),
            tables.per_address.wait(&attempt.source, now),
        ];
        let known = tables
            .known
            .get(&(attempt.client, attempt.source))
            .is_some_and(|at| now.saturating_duration_since(*at) < self.policy.known_address_for);
        if !known {
            waits.push(tables.per_client.wait(&attempt.client, now));
        }
        match waits.into_iter().flatten().max() {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt.
    pub fn failed(&self, attempt: Attempt, now: Instant) {
        let capacity = self.policy.capacity;
        let mut tables = self.lock();
        tables
            .per_client_and_address
            .drain((attempt.client, attempt.source), now, capacity);
        tables.per_address.drain(attempt.source, now, capacity);
        tables.per_client.drain(attempt.client, now, capacity);
    }

    /// Remembers that the attempt's address knows its client's secret.
    pub fn succeeded(&self, attempt: Attempt, now: Instant) {
        let capacity = self.policy.capacity;
        let known_for = self.policy.known_address_for;
        let mut tables = self.lock();
        let key = (attempt.client, attempt.source);
        if !tables.known.contains_key(&key) && tables.known.len() >= capacity {
            tables
                .known
                .retain(|_, at| now.saturating_duration_since(*at) < known_for);
            if tables.known.len() >= capacity
                && let Some(oldest) = tables
                    .known
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| *k)
            {
                tables.known.remove(&oldest);
            }
        }
        tables.known.insert(key, now);
    }

    /// Entries held, all tables together (for tests of the memory bound).
    pub fn entries(&self) -> usize {
        let tables = self.lock();
        tables.per_client_and_address.map.len()
            + tables.per_address.map.len()
            + tables.per_client.map.len()
            + tables.known.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(last: u8) -> Source {
        Source::from(Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))))
    }

    fn fail_until_refused(throttle: &LoginThrottle, attempt: Attempt, now: Instant) -> u32 {
        let mut failures = 0;
        while throttle.check(attempt, now).is_ok() {
            throttle.failed(attempt, now);
            failures += 1;
            assert!(failures < 10_000, "never throttled");
        }
        failures
    }

    #[test]
    fn one_client_from_one_address_gets_ten_failures_then_one_per_refill() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        let attempt = throttle.attempt("client", v4(1));
        assert_eq!(fail_until_refused(&throttle, attempt, now), 10);
        let wait = throttle.check(attempt, now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(6));
        // Refused until the wait has passed, then one more attempt.
        assert!(throttle.check(attempt, now + wait / 2).is_err());
        assert!(throttle.check(attempt, now + wait).is_ok());
        throttle.failed(attempt, now + wait);
        assert!(throttle.check(attempt, now + wait).is_err());
    }

    #[test]
    fn other_clients_and_addresses_are_not_throttled_by_one() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        fail_until_refused(&throttle, throttle.attempt("victim", v4(1)), now);
        assert!(
            throttle
                .check(throttle.attempt("victim", v4(2)), now)
                .is_ok()
        );
        assert!(
            throttle
                .check(throttle.attempt("other", v4(1)), now)
                .is_ok()
        );
    }

    #[test]
    fn an_address_inventing_client_ids_is_throttled() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        let mut failures = 0;
        for n in 0.. {
            let attempt = throttle.attempt(&format!("invented-{n}"), v4(9));
            if throttle.check(attempt, now).is_err() {
                break;
            }
            throttle.failed(attempt, now);
            failures += 1;
        }
        assert_eq!(failures, 30);
        assert!(
            throttle
                .check(throttle.attempt("victim", v4(1)), now)
                .is_ok()
        );
    }

    #[test]
    fn failing_against_a_client_from_many_addresses_spares_its_known_addresses() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        let victim_home = throttle.attempt("victim", v4(1));
        throttle.succeeded(victim_home, now);
        let mut failures = 0;
        for last in 2..=255 {
            let attempt = throttle.attempt("victim", v4(last));
            while throttle.check(attempt, now).is_ok() {
                throttle.failed(attempt, now);
                failures += 1;
            }
            if failures >= 100 {
                break;
            }
        }
        assert_eq!(failures, 100);
        // A new address is refused for the victim's client id; its known one is not.
        assert!(
            throttle
                .check(throttle.attempt("victim", v4(250)), now)
                .is_err()
        );
        assert!(throttle.check(victim_home, now).is_ok());
    }

    #[test]
    fn ipv6_addresses_of_one_prefix_are_one_source() {
        let a = Source::from(Some(IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 0, 1, 0, 0, 0, 1,
        ))));
        let b = Source::from(Some(IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 0, 1, 9, 9, 9, 9,
        ))));
        let c = Source::from(Some(IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 0, 2, 0, 0, 0, 1,
        ))));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped = Source::from(Some(IpAddr::V6(
            Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped(),
        )));
        assert_eq!(mapped, v4(1));
    }

    #[test]
    fn memory_stays_bounded_whatever_is_invented() {
        let policy = LoginPolicy {
            capacity: 100,
            ..LoginPolicy::default()
        };
        let throttle = LoginThrottle::new(policy);
        let now = Instant::now();
        for n in 0..10_000u32 {
            let source = Source::from(Some(IpAddr::V4(Ipv4Addr::from(n))));
            let attempt = throttle.attempt(&format!("invented-{n}-{}", "x".repeat(1000)), source);
            throttle.failed(attempt, now);
            throttle.succeeded(attempt, now);
        }
        assert!(throttle.entries() <= 4 * 100, "{}", throttle.entries());
    }
}
