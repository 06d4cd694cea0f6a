//! The under-load decision: a device is under load while its queue of pending handshake messages is
//! at least 1/8 full, and for one second after it last was. Under load, handshake messages without a
//! valid mac2 are answered with a cookie reply instead of being processed.

use std::time::Instant;

use crate::constants::{UNDER_LOAD_AFTER_TIME, UNDER_LOAD_QUEUE_FRACTION};

/// Hysteresis over the handshake queue length.
#[derive(Debug, Default, Clone)]
pub struct LoadMonitor {
    last_under_load: Option<Instant>,
}

impl LoadMonitor {
    /// Records the queue length seen at `now` and tells whether the device is under load.
    pub fn observe(&mut self, now: Instant, queue_len: usize, capacity: usize) -> bool {
        if queue_len >= capacity / UNDER_LOAD_QUEUE_FRACTION {
            self.last_under_load = Some(now);
            return true;
        }
        self.last_under_load.is_some_and(|t| now.saturating_duration_since(t) < UNDER_LOAD_AFTER_TIME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn threshold_and_hysteresis() {
        let t0 = crate::test_instant();
        let mut m = LoadMonitor::default();
        assert!(!m.observe(t0, 127, 1024));
        assert!(m.observe(t0, 128, 1024));
        assert!(m.observe(t0 + Duration::from_millis(999), 0, 1024));
        assert!(!m.observe(t0 + Duration::from_secs(1), 0, 1024));
    }
}
