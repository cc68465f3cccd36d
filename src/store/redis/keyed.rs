//! A keyed throttle in Redis: each key's schedule is a Redis key of the
//! throttle's hash tag (`mpt:{name}:k:<key>`, and `mpt:{name}:kw:<key>`
//! for its WINDOW grant times), set to expire at the instant the key is
//! idle again, so that Redis forgets idle keys by itself; the sorted set
//! `mpt:{name}:ks` scores each key by that instant, to count the live ones.
//! Every decision is one script (`lua/key_*.lua`) on the server's clock;
//! the run state, the kill flag and the statistics are the throttle's own
//! (see the parent module).

use super::{RedisStore, Shared, Value, grant_at, ints, unexpected};
use crate::clock::Clock;
use crate::error::Result;
use crate::store::{KeyFigures, KeyGrant, KeyToken, KeyedStore, TableFigures};
use redis::Script;

impl Shared {
    /// The keys of one key's scripts (see `lua/prelude.lua`): the
    /// throttle's, with the key's grant times for WINDOW's, and the key's
    /// state last.
    fn key_names(&self, key: &[u8]) -> [Vec<u8>; 6] {
        let h = &self.keys[0];
        let named = |kind: &str| {
            let mut k = format!("{h}:{kind}:").into_bytes();
            k.extend_from_slice(key);
            k
        };
        [
            h.clone().into_bytes(),
            named("kw"),
            self.keys[2].clone().into_bytes(),
            self.keys[3].clone().into_bytes(),
            self.keys[4].clone().into_bytes(),
            named("k"),
        ]
    }

    /// Runs script `pick` on `key` with `args`, then the key itself.
    fn run_key(
        &self,
        deadline: Option<i64>,
        pick: impl Fn(&super::Scripts) -> &Script,
        key: &[u8],
        args: &[i64],
    ) -> Result<Vec<i64>> {
        let names = self.key_names(key);
        let reply: Value = self.link.call(deadline, |c| {
            let mut inv = pick(&self.scripts).prepare_invoke();
            for k in &names {
                inv.key(k.as_slice());
            }
            for a in args {
                inv.arg(*a);
            }
            inv.arg(key);
            inv.invoke(c)
        })?;
        Ok(ints(&reply))
    }

    /// `(live, dropped, added, the key there, granted, since_us, now_us)`.
    fn key_stats(&self, key: &[u8]) -> Result<Option<[i64; 7]>> {
        let r = self.run_key(None, |s| &s.key_stats, key, &[])?;
        match r[..] {
            [1, live, dropped, added, there, granted, since, now] => {
                Ok(Some([live, dropped, added, there, granted, since, now]))
            }
            [0] => {
                self.gone(None)?;
                Ok(None)
            }
            _ => Err(unexpected("key_stats", &r)),
        }
    }
}

impl KeyedStore for RedisStore {
    fn key_reserve(
        &self,
        key: &[u8],
        n: u64,
        now: i64,
        latest: i64,
        clock: &dyn Clock,
    ) -> Result<Option<KeyGrant>> {
        let sh = &self.sh;
        let max_wait = if latest == i64::MAX {
            -1
        } else {
            latest.saturating_sub(now).max(0) / 1000
        };
        loop {
            let r = sh.retrying(latest, clock, |d| {
                sh.run_key(d, |s| &s.key_reserve, key, &[n as i64, max_wait])
            })?;
            let Some(r) = r else { return Ok(None) };
            let arrived = clock.now_ns();
            match r[..] {
                [0, wait, run, a, b] => {
                    sh.note_reply(0, run);
                    let grant = if wait <= 0 {
                        now
                    } else {
                        grant_at(arrived, wait)
                    };
                    return Ok(Some(KeyGrant {
                        grant,
                        token: KeyToken::Remote(run as u32, a, b),
                    }));
                }
                [code @ (1..=3), _, run] => {
                    sh.note_reply(code, run);
                    return Ok(None);
                }
                [4] => {
                    if !sh.gone(None)? {
                        return Ok(None);
                    }
                }
                _ => return Err(unexpected("key_reserve", &r)),
            }
        }
    }

    fn key_give_back(&self, key: &[u8], n: u64, grant: &KeyGrant) {
        if let KeyToken::Remote(run, a, b) = grant.token {
            let args = [n as i64, a, b, i64::from(run)];
            let _ = self.sh.run_key(None, |s| &s.key_give_back, key, &args);
        }
    }

    fn key_peek(&self, key: &[u8], n: u64, _clock: &dyn Clock) -> Result<(u64, i64)> {
        let sh = &self.sh;
        let r = sh.run_key(None, |s| &s.key_peek, key, &[n as i64])?;
        match r[..] {
            [0, level, wait] => Ok((level.max(0) as u64, wait.max(0).saturating_mul(1000))),
            [4] => {
                sh.gone(None)?;
                Err(crate::error::Error::NotRunning)
            }
            _ => Err(unexpected("key_peek", &r)),
        }
    }

    fn key_forget(&self, key: &[u8]) -> Result<bool> {
        let r = self.sh.run_key(None, |s| &s.key_forget, key, &[])?;
        Ok(r.first() == Some(&1))
    }

    fn key_figures(&self, key: &[u8]) -> Result<Option<KeyFigures>> {
        let Some([.., there, granted, since, now]) = self.sh.key_stats(key)? else {
            return Ok(None);
        };
        if there != 1 {
            return Ok(None);
        }
        // The server's time of its addition, on this process's clock.
        let ago = now.saturating_sub(since).max(0).saturating_mul(1000);
        Ok(Some(KeyFigures {
            granted: granted.max(0) as u64,
            since_ns: crate::clock::monotonic_ns().saturating_sub(ago),
        }))
    }

    fn table_figures(&self) -> Result<TableFigures> {
        let Some([live, dropped, added, ..]) = self.sh.key_stats(b"")? else {
            return Ok(TableFigures::default());
        };
        Ok(TableFigures {
            live: live.max(0) as u64,
            capacity: 0,
            evictions: dropped.max(0) as u64,
            added: added.max(0) as u64,
        })
    }
}
