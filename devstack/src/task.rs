//! A background task of the local stack (a poller, a schedule, the Transcribe completer):
//! told to stop and awaited by [`Background::stop`], aborted when dropped.

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Background {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Background {
    /// Runs `work`, which should return once the receiver it is given changes.
    pub fn spawn<F, Fut>(work: F) -> Self
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        Self {
            stop,
            task: Some(tokio::spawn(work(stopped))),
        }
    }

    /// Tells the task to stop and waits until it has.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves `app` on a free loopback port until the returned sender is sent to or dropped.
pub async fn serve(
    app: axum::Router,
) -> anyhow::Result<(std::net::SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    serve_on(app, 0).await
}

/// [`serve`] on loopback port `port` (0: a free one).
pub async fn serve_on(
    app: axum::Router,
    port: u16,
) -> anyhow::Result<(std::net::SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((addr, stop))
}
