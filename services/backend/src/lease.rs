//! Dynamic database credentials and the timing of their rotation.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The shortest wait before a rotation, whatever the lease says.
pub const MIN_ROTATION_DELAY: Duration = Duration::from_secs(1);

/// A secret string: `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A lease on dynamic PostgreSQL credentials from OpenBao's database engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// OpenBao's lease id (`database/creds/backend/…`).
    pub lease_id: String,
    /// The lease's TTL when it was issued (0: no expiry).
    pub duration: Duration,
    /// Whether OpenBao allows renewing it.
    pub renewable: bool,
    /// When it was issued (as seen here).
    pub issued_at: SystemTime,
}

impl Lease {
    /// When it expires (`None`: never).
    pub fn expires_at(&self) -> Option<SystemTime> {
        (!self.duration.is_zero()).then(|| self.issued_at + self.duration)
    }

    /// The time left at `now` (zero once expired; `None`: never expires).
    pub fn ttl_left(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at().map(|at| at.duration_since(now).unwrap_or_default())
    }

    /// How long after issue to rotate (see [`rotation_delay`]).
    pub fn rotate_after(&self, rotate_at: f64) -> Option<Duration> {
        rotation_delay(self.duration, rotate_at)
    }

    /// How long from `now` until it is time to rotate (zero if overdue; `None`: never).
    pub fn until_rotation(&self, rotate_at: f64, now: SystemTime) -> Option<Duration> {
        let due = self.issued_at + self.rotate_after(rotate_at)?;
        Some(due.duration_since(now).unwrap_or_default())
    }
}

/// When to rotate a lease of `ttl`: at `rotate_at` × `ttl` (rotate_at in (0, 1)), but not
/// sooner than [`MIN_ROTATION_DELAY`] and always before the lease ends. `None` for a lease
/// without expiry (ttl 0).
pub fn rotation_delay(ttl: Duration, rotate_at: f64) -> Option<Duration> {
    if ttl.is_zero() {
        return None;
    }
    let fraction = if rotate_at.is_finite() { rotate_at.clamp(0.0, 1.0) } else { 0.83 };
    let at = ttl.mul_f64(fraction);
    Some(at.max(MIN_ROTATION_DELAY.min(ttl / 2)).min(ttl))
}

/// Credentials for one dynamic PostgreSQL role.
#[derive(Debug, Clone)]
pub struct DbCreds {
    /// The role name OpenBao created.
    pub username: String,
    /// Its password.
    pub password: Secret,
    /// The lease behind them.
    pub lease: Lease,
}

/// What is shown about the current lease (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseInfo {
    /// OpenBao's lease id.
    pub lease_id: String,
    /// The PostgreSQL role.
    pub db_user: String,
    /// Seconds left (`null`: no expiry).
    pub ttl_left_secs: Option<u64>,
    /// The lease's TTL when issued.
    pub lease_duration_secs: u64,
    /// Seconds since the Unix epoch when it was issued.
    pub issued_at: u64,
    /// Seconds from issue to rotation (`null`: never).
    pub rotate_after_secs: Option<u64>,
    /// Rotations since the process started.
    pub rotations: u64,
}

impl LeaseInfo {
    /// Describes `creds` at `now`.
    pub fn new(creds: &DbCreds, rotate_at: f64, rotations: u64, now: SystemTime) -> Self {
        let lease = &creds.lease;
        Self {
            lease_id: lease.lease_id.clone(),
            db_user: creds.username.clone(),
            ttl_left_secs: lease.ttl_left(now).map(|d| d.as_secs()),
            lease_duration_secs: lease.duration.as_secs(),
            issued_at: lease.issued_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            rotate_after_secs: lease.rotate_after(rotate_at).map(|d| d.as_secs()),
            rotations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(secs: u64) -> Lease {
        Lease {
            lease_id: "database/creds/backend/x".into(),
            duration: Duration::from_secs(secs),
            renewable: true,
            issued_at: UNIX_EPOCH + Duration::from_secs(1_000_000),
        }
    }

    #[test]
    fn rotation_at_fraction_of_ttl() {
        // Production default: 0.83 of 1 h is about 50 min.
        let d = rotation_delay(Duration::from_secs(3600), 0.83).expect("some");
        assert_eq!(d.as_secs(), 2988);
        assert!((49 * 60..=50 * 60).contains(&d.as_secs()));
        assert_eq!(rotation_delay(Duration::from_secs(60), 0.5), Some(Duration::from_secs(30)));
        // Short lab TTLs: never sooner than 1 s, never after the lease ends.
        assert_eq!(rotation_delay(Duration::from_secs(10), 0.01), Some(Duration::from_secs(1)));
        assert_eq!(rotation_delay(Duration::from_secs(1), 0.01), Some(Duration::from_millis(500)));
        assert_eq!(rotation_delay(Duration::from_secs(10), 5.0), Some(Duration::from_secs(10)));
        assert_eq!(rotation_delay(Duration::from_secs(10), f64::NAN), Some(Duration::from_millis(8300)));
        assert_eq!(rotation_delay(Duration::ZERO, 0.83), None);
    }

    #[test]
    fn ttl_left_and_until_rotation() {
        let l = lease(100);
        let t0 = l.issued_at;
        assert_eq!(l.ttl_left(t0), Some(Duration::from_secs(100)));
        assert_eq!(l.ttl_left(t0 + Duration::from_secs(30)), Some(Duration::from_secs(70)));
        assert_eq!(l.ttl_left(t0 + Duration::from_secs(300)), Some(Duration::ZERO));
        assert_eq!(l.until_rotation(0.8, t0 + Duration::from_secs(30)), Some(Duration::from_secs(50)));
        assert_eq!(l.until_rotation(0.8, t0 + Duration::from_secs(90)), Some(Duration::ZERO));
        let forever = lease(0);
        assert_eq!(forever.ttl_left(t0), None);
        assert_eq!(forever.until_rotation(0.8, t0), None);
    }

    #[test]
    fn lease_info_has_no_password() {
        let creds =
            DbCreds { username: "v-jwt-backend-abc".into(), password: Secret::new("hunter2"), lease: lease(60) };
        let info = LeaseInfo::new(&creds, 0.5, 3, creds.lease.issued_at + Duration::from_secs(10));
        assert_eq!(info.ttl_left_secs, Some(50));
        assert_eq!(info.rotate_after_secs, Some(30));
        assert_eq!(info.rotations, 3);
        let json = serde_json::to_string(&info).expect("json");
        assert!(!json.contains("hunter2"));
        assert!(!format!("{creds:?}").contains("hunter2"));
    }
}
