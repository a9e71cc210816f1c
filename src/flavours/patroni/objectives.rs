//! Patroni's timing and synchronous mode derived from the declared objectives.
//!
//! A crashed leader's key lives at most `ttl` seconds after its last renewal; a replica may
//! take up to `loop_wait` more to run its next cycle (in practice etcd's watch wakes it
//! sooner: the bound is conservative); then the promotion and the route. Patroni's rules:
//! ttl >= 20, loop_wait >= 1, loop_wait + 2 * retry_timeout <= ttl (a leader cut off from
//! the DCS demotes itself before its key expires).

use std::time::Duration;

use crate::flavours::objectives::{
    detection_budget, route_words, synchronous_commit_refusal, target, PROMOTION,
};
use crate::flavours::patroni::config::Patroni;
use crate::flavours::{FailoverTiming, Refusal, RouteDelay};
use crate::model::objectives::ceil_secs;
use crate::model::Rpo;

const MIN_TTL: u64 = 20;
const MIN_LOOP_WAIT: u64 = 1;
/// Patroni's own ttl and loop_wait: a generous rto buys tolerance of DCS and network blips up
/// to what Patroni's authors chose, never a slower failover than theirs.
const MAX_TTL: u64 = 30;
const MAX_LOOP_WAIT: u64 = 10;

/// ttl, loop_wait, retry_timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
}

/// The fastest failover Patroni can do, with this route, in whole seconds.
pub fn least(route: &RouteDelay) -> u64 {
    MIN_TTL + MIN_LOOP_WAIT + ceil_secs(PROMOTION) + ceil_secs(route.worst)
}

/// The timing for an rto: the loop is shortened first (down to 1 s) while ttl stays at
/// Patroni's minimum; room beyond that goes to loop_wait up to 10, then to ttl up to 30.
/// retry_timeout takes what Patroni's rule leaves (the longest DCS outage a leader rides
/// out).
pub fn derive(rto: Duration, route: &RouteDelay) -> Result<Timing, Refusal> {
    let least = least(route);
    if rto.as_secs() < least || detection_budget(rto, route).is_none() {
        return Err(Refusal {
            objective: "rto",
            reason: format!(
                "Patroni cannot fail over in under {least} s here: ttl ≥ 20 (Patroni's minimum; a crashed leader's key lives that long) + loop_wait ≥ 1 (a replica notices) + ~{} s promotion + {}",
                ceil_secs(PROMOTION),
                route_words(route),
            ),
            best: format!("the best is rto: {least}s"),
        });
    }
    let budget = target(rto, least) - ceil_secs(PROMOTION) - ceil_secs(route.worst);
    let loop_wait = (budget - MIN_TTL).clamp(MIN_LOOP_WAIT, MAX_LOOP_WAIT);
    let ttl = (budget - loop_wait).clamp(MIN_TTL, MAX_TTL);
    let retry_timeout = (ttl - loop_wait) / 2;
    Ok(Timing {
        ttl: ttl as u32,
        loop_wait: loop_wait as u32,
        retry_timeout: retry_timeout as u32,
    })
}

/// The worst case with these settings, the route aside.
pub fn timing(p: &Patroni) -> FailoverTiming {
    FailoverTiming {
        detection: Duration::from_secs(u64::from(p.ttl) + u64::from(p.loop_wait)),
        promotion: PROMOTION,
        settings: format!(
            "Patroni ttl {}, loop_wait {}, retry_timeout {}",
            p.ttl, p.loop_wait, p.retry_timeout
        ),
    }
}

/// Patroni with the settings the objectives decide, and the plan's notes on the rpo.
pub fn apply(
    p: &Patroni,
    cluster: &crate::model::Cluster,
    objectives: &crate::model::Objectives,
    route: &RouteDelay,
) -> Result<(Patroni, Vec<String>), Vec<Refusal>> {
    let mut out = p.clone();
    let mut notes = Vec::new();
    let mut refusals = Vec::new();
    if let Some(rto) = objectives.rto {
        match derive(rto, route) {
            Ok(t) => {
                out.ttl = t.ttl;
                out.loop_wait = t.loop_wait;
                out.retry_timeout = t.retry_timeout;
            }
            Err(r) => refusals.push(r),
        }
    }
    match objectives.rpo {
        Some(Rpo::Zero) => {
            if let Some(r) = synchronous_commit_refusal(cluster) {
                refusals.push(r);
            }
            out.synchronous_mode = true;
            notes.push(if out.synchronous_mode_strict {
                "objectives: rpo 0 → synchronous_mode: true (strict, as patroni.synchronous_mode_strict says): only a synchronous standby is promoted, and while none is in sync writes wait".to_owned()
            } else {
                // Strict mode would stop every write while no standby is in sync (a standby
                // down on a two-node cluster stops the application): an outage the rto does
                // not allow for.
                "objectives: rpo 0 → synchronous_mode: true: Patroni promotes only a synchronous standby, so a failover loses no acknowledged commit. Not strict: while no standby is in sync the primary goes on alone rather than refusing writes (strict mode turns a lost standby into an outage); set patroni.synchronous_mode_strict: true to rule that window out too".to_owned()
            });
        }
        Some(Rpo::Bytes(n)) => {
            out.maximum_lag_on_failover = n;
            notes.push(format!(
                "objectives: rpo {} → maximum_lag_on_failover: {n}: a standby further behind is not promoted (the lag Patroni compares is the one it saw at its last loop, up to loop_wait old)",
                Rpo::Bytes(n)
            ));
        }
        None => {}
    }
    if refusals.is_empty() {
        Ok((out, notes))
    } else {
        Err(refusals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(secs: u64, how: &str) -> RouteDelay {
        RouteDelay {
            worst: Duration::from_secs(secs),
            how: how.to_owned(),
        }
    }

    fn t(ttl: u32, loop_wait: u32, retry_timeout: u32) -> Timing {
        Timing {
            ttl,
            loop_wait,
            retry_timeout,
        }
    }

    #[test]
    fn derives_timing_from_the_rto() {
        let callback = route(1, "VIP by callback");
        let haproxy_fast = route(1, "haproxy every 0.5 s, out after 2");
        let haproxy = route(2, "haproxy every 1 s, out after 2");
        for (rto, r, want) in [
            (25, &callback, t(20, 1, 9)),
            (25, &haproxy_fast, t(20, 1, 9)),
            (30, &haproxy_fast, t(20, 3, 8)),
            (30, &callback, t(20, 3, 8)),
            (40, &haproxy, t(21, 10, 5)),
            (60, &haproxy, t(30, 10, 10)),
            (60, &callback, t(30, 10, 10)),
            (300, &haproxy, t(30, 10, 10)),
        ] {
            let got = derive(Duration::from_secs(rto), r).expect("fits");
            assert_eq!(got, want, "rto {rto} with {}", r.how);
            // Patroni's rules hold, and the worst case meets the rto.
            assert!(got.ttl >= 20 && got.loop_wait >= 1 && got.retry_timeout >= 3);
            assert!(got.loop_wait + 2 * got.retry_timeout <= got.ttl);
            let worst = u64::from(got.ttl + got.loop_wait) + 3 + r.worst.as_secs();
            assert!(worst <= rto, "rto {rto}: worst {worst}");
        }
    }

    #[test]
    fn refuses_an_rto_below_what_patroni_can_do() {
        let r = derive(Duration::from_secs(24), &route(1, "VIP by callback")).unwrap_err();
        assert_eq!(r.objective, "rto");
        assert!(
            r.reason
                .starts_with("Patroni cannot fail over in under 25 s here: ttl ≥ 20"),
            "{}",
            r.reason
        );
        assert_eq!(r.best, "the best is rto: 25s");
        let r = derive(Duration::from_secs(26), &route(5, "keepalived")).unwrap_err();
        assert_eq!(r.best, "the best is rto: 29s");
        assert!(derive(Duration::from_secs(2), &route(5, "keepalived")).is_err());
    }
}
