//! Keeps one connection to the cloud up: reconnects with backoff, rotates connections before
//! API Gateway's two-hour cap, retries a refused token on a slow schedule, and gives up only
//! on a configuration no retry can fix.
//!
//! The loop knows nothing about sockets: it calls a `dial` function that returns a
//! [`LiveConnection`] (a handle on a running session) or an error. That keeps it testable with
//! paused time and scripted dials.

use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::TunnelError;
use super::backoff::{Backoff, BackoffSettings};

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The connection closed or failed; the supervisor reconnects.
    Lost(String),
    /// The session was told to drain and closed after its last reply.
    Drained,
}

/// A handle on a running session; dropping it stops the session.
#[derive(Debug)]
pub struct LiveConnection {
    drain: Option<oneshot::Sender<()>>,
    ended: oneshot::Receiver<SessionEnd>,
}

impl LiveConnection {
    /// A handle from the session's two signals: `drain` tells it to finish its in-flight
    /// requests and close; `ended` reports how it ended.
    pub fn new(drain: oneshot::Sender<()>, ended: oneshot::Receiver<SessionEnd>) -> Self {
        Self { drain: Some(drain), ended }
    }

    /// Asks the session to finish its in-flight requests and close; it ends on its own.
    fn drain(mut self) {
        if let Some(drain) = self.drain.take() {
            let _ = drain.send(());
        }
    }
}

/// Settings of the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorSettings {
    /// Reconnect delays.
    pub backoff: BackoffSettings,
    /// Delays after the cloud refused the token: slow, since a person has to act (or a
    /// redeploy to finish), and every try costs the cloud an authorizer call.
    pub refused_backoff: BackoffSettings,
    /// Age at which a connection is replaced (API Gateway closes them at 2 hours).
    pub max_connection_age: Duration,
    /// How soon to try again when dialling the replacement fails (the old one stays up).
    pub rotation_retry: Duration,
    /// How long the old connection keeps serving after its replacement is up, so the cloud
    /// has registered the new one before the old one closes.
    pub drain_grace: Duration,
}

impl Default for SupervisorSettings {
    fn default() -> Self {
        Self {
            backoff: BackoffSettings::default(),
            refused_backoff: BackoffSettings {
                initial: Duration::from_secs(30),
                max: Duration::from_secs(15 * 60),
                healthy_after: Duration::from_secs(60),
            },
            max_connection_age: Duration::from_secs(110 * 60),
            rotation_retry: Duration::from_secs(30),
            drain_grace: Duration::from_secs(5),
        }
    }
}

/// How long a session told to stop may take to finish its in-flight requests.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps a connection up until a fatal error, which it returns: a connection is always either
/// up or being retried, never "alive but disconnected". When `shutdown` fires, the live session
/// finishes its in-flight requests (the cloud is waiting for their replies) and closes, and this
/// returns `Ok`.
pub async fn supervise<D, F>(
    mut dial: D,
    settings: SupervisorSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TunnelError>
where
    D: FnMut() -> F,
    F: Future<Output = Result<LiveConnection, TunnelError>>,
{
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = Backoff::new(settings.backoff);
    let mut refused = Backoff::new(settings.refused_backoff);
    loop {
        let dialled = tokio::select! {
            dialled = dial() => dialled,
            () = &mut shutdown => return Ok(()),
        };
        let mut current = match dialled {
            Ok(connection) => connection,
            Err(error) if error.is_fatal() => return Err(error),
            Err(error) => {
                let delay = if error.is_refused() { refused.next_delay() } else { backoff.next_delay() };
                tracing::warn!(%error, retry_in = ?delay, "cannot connect to the cloud");
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    () = &mut shutdown => return Ok(()),
                }
            }
        };
        refused.reset();
        tracing::info!("connected to the cloud");
        let mut connected_at = Instant::now();
        let mut rotate_at = connected_at + settings.max_connection_age;
        let end = loop {
            tokio::select! {
                end = &mut current.ended => {
                    break end.unwrap_or_else(|_| SessionEnd::Lost("the session stopped".into()));
                }
                () = &mut shutdown => {
                    let LiveConnection { drain, ended } = current;
                    if let Some(drain) = drain {
                        let _ = drain.send(());
                    }
                    if tokio::time::timeout(STOP_TIMEOUT, ended).await.is_err() {
                        tracing::warn!("the cloud connection did not finish its requests in time");
                    }
                    return Ok(());
                }
                () = tokio::time::sleep_until(rotate_at) => {
                    // Make the new connection first, then let the old one finish and close.
                    match dial().await {
                        Ok(fresh) => {
                            let old = std::mem::replace(&mut current, fresh);
                            let grace = settings.drain_grace;
                            tokio::spawn(async move {
                                tokio::time::sleep(grace).await;
                                old.drain();
                            });
                            connected_at = Instant::now();
                            rotate_at = connected_at + settings.max_connection_age;
                            tracing::info!("rotated the connection to the cloud");
                        }
                        Err(error) if error.is_fatal() => return Err(error),
                        Err(error) => {
                            tracing::warn!(%error, "cannot open the replacement connection; keeping the current one");
                            rotate_at = Instant::now() + settings.rotation_retry;
                        }
                    }
                }
            }
        };
        if connected_at.elapsed() >= backoff.settings().healthy_after {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::warn!(?end, retry_in = ?delay, "lost the connection to the cloud");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut shutdown => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use futures_util::future::BoxFuture;

    use super::*;

    type DialResult = Result<LiveConnection, TunnelError>;

    /// What a scripted dial does.
    enum Script {
        Fail,
        Refuse,
        /// A configuration that cannot work: ends the supervisor.
        Broken,
        /// Succeeds; the session ends after this long (or never).
        Connect(Option<Duration>),
    }

    #[derive(Default)]
    struct Log {
        dials: Vec<Instant>,
        drains: Vec<(usize, Instant)>,
    }

    fn scripted(script: Vec<Script>) -> (impl FnMut() -> BoxFuture<'static, DialResult>, Arc<Mutex<Log>>) {
        let log = Arc::new(Mutex::new(Log::default()));
        let mut script: VecDeque<Script> = script.into();
        let dial_log = log.clone();
        let dial = move || {
            let step = script.pop_front().unwrap_or(Script::Broken);
            let log = dial_log.clone();
            let number = {
                let mut log = log.lock().unwrap();
                log.dials.push(Instant::now());
                log.dials.len()
            };
            let dial: BoxFuture<'static, DialResult> = Box::pin(async move {
                match step {
                    Script::Fail => Err(TunnelError::Unreachable("connection refused".into())),
                    Script::Refuse => Err(TunnelError::Unauthorized(401)),
                    Script::Broken => Err(TunnelError::Config("CLOUD_URL is not usable".into())),
                    Script::Connect(lifetime) => {
                        let (drain, drained) = oneshot::channel();
                        let (end, ended) = oneshot::channel();
                        tokio::spawn(async move {
                            let outcome = match lifetime {
                                Some(lifetime) => {
                                    tokio::select! {
                                        () = tokio::time::sleep(lifetime) => SessionEnd::Lost("closed".into()),
                                        Ok(()) = drained => {
                                            log.lock().unwrap().drains.push((number, Instant::now()));
                                            SessionEnd::Drained
                                        }
                                    }
                                }
                                None => match drained.await {
                                    Ok(()) => {
                                        log.lock().unwrap().drains.push((number, Instant::now()));
                                        SessionEnd::Drained
                                    }
                                    Err(_) => std::future::pending().await,
                                },
                            };
                            let _ = end.send(outcome);
                        });
                        Ok(LiveConnection::new(drain, ended))
                    }
                }
            });
            dial
        };
        (dial, log)
    }

    fn settings() -> SupervisorSettings {
        SupervisorSettings {
            backoff: BackoffSettings {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(16),
                healthy_after: Duration::from_secs(60),
            },
            refused_backoff: BackoffSettings {
                initial: Duration::from_secs(60),
                max: Duration::from_secs(600),
                healthy_after: Duration::from_secs(60),
            },
            max_connection_age: Duration::from_secs(7200 - 600),
            rotation_retry: Duration::from_secs(30),
            drain_grace: Duration::from_secs(5),
        }
    }

    fn gaps(log: &Log) -> Vec<Duration> {
        log.dials.windows(2).map(|pair| pair[1] - pair[0]).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_and_a_broken_configuration_is_fatal() {
        let (dial, log) = scripted(vec![Script::Fail, Script::Fail, Script::Fail, Script::Fail, Script::Broken]);
        let error = supervise(dial, settings(), std::future::pending()).await.unwrap_err();
        assert!(matches!(error, TunnelError::Config(_)), "{error}");
        let gaps = gaps(&log.lock().unwrap());
        assert_eq!(gaps.len(), 4, "the broken dial is the last one: {gaps:?}");
        for (gap, ceiling) in gaps.iter().zip([1, 2, 4, 8]) {
            let ceiling = Duration::from_secs(ceiling);
            assert!(*gap >= ceiling / 2 && *gap <= ceiling, "{gap:?} vs ceiling {ceiling:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_token_is_retried_slowly_until_the_cloud_accepts_it() {
        let script =
            vec![Script::Refuse, Script::Refuse, Script::Refuse, Script::Connect(Some(Duration::from_secs(5)))];
        let (dial, log) = scripted(script);
        let error = supervise(dial, settings(), std::future::pending()).await.unwrap_err();
        assert!(matches!(error, TunnelError::Config(_)), "{error}");
        let gaps = gaps(&log.lock().unwrap());
        // Ceilings 60, 120 and 240 s on the slow schedule, never the fast one's seconds.
        for (gap, ceiling) in gaps.iter().zip([60, 120, 240]) {
            let ceiling = Duration::from_secs(ceiling);
            assert!(*gap >= ceiling / 2 && *gap <= ceiling, "{gap:?} vs ceiling {ceiling:?}");
        }
        assert_eq!(gaps.len(), 4, "retried until accepted: {gaps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_connection_resets_the_backoff() {
        let script = vec![
            Script::Fail,
            Script::Fail,
            Script::Fail,
            // Short-lived: the backoff keeps growing.
            Script::Connect(Some(Duration::from_secs(5))),
            // Healthy for five minutes: the next delay starts over.
            Script::Connect(Some(Duration::from_secs(300))),
            Script::Refuse,
        ];
        let (dial, log) = scripted(script);
        let _ = supervise(dial, settings(), std::future::pending()).await;
        let log = log.lock().unwrap();
        let gaps = gaps(&log);
        let after_short = gaps[3] - Duration::from_secs(5);
        // Three failures used the ceilings 1, 2 and 4 s; the fourth delay is drawn from [4, 8] s.
        assert!(after_short >= Duration::from_secs(4), "backoff kept growing after a short connection: {gaps:?}");
        let after_healthy = gaps[4] - Duration::from_secs(300);
        assert!(after_healthy <= Duration::from_secs(1), "backoff reset after a healthy connection: {gaps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn connections_rotate_before_the_cap_opening_the_new_one_first() {
        let script = vec![
            Script::Connect(None),
            // The first replacement fails: the old connection stays and rotation is retried.
            Script::Fail,
            Script::Connect(None),
            Script::Connect(None),
            Script::Refuse,
        ];
        let (dial, log) = scripted(script);
        let started = Instant::now();
        let _ = supervise(dial, settings(), std::future::pending()).await;
        let log = log.lock().unwrap();
        let age = settings().max_connection_age;
        assert_eq!(log.dials[1] - started, age);
        assert_eq!(log.dials[2] - log.dials[1], Duration::from_secs(30), "retried after rotation_retry");
        // The first connection was drained only after its replacement was up (plus the grace
        // for the cloud to register it), well before 2 h.
        let (drained, at) = log.drains[0];
        assert_eq!(drained, 1);
        assert_eq!(at - log.dials[2], Duration::from_secs(5));
        assert!(at - started < Duration::from_secs(7200));
        assert_eq!(log.dials[3] - log.dials[2], age, "the next rotation is one age later");
    }
}
