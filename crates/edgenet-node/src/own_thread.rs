//! Parts of the node that must never wait behind the proxy (anycast's BGP and BFD, the
//! interconnects' link events and sessions) run on a thread of their own with a current-thread
//! runtime: [`start`] runs one and returns what it reports once it is up.

use std::future::Future;

/// Where a part reports that it is up (with what the caller gets), or why it could not start.
pub type Ready<T> = std::sync::mpsc::Sender<anyhow::Result<T>>;

/// Runs `run` on a thread named `name` with a current-thread runtime, and waits for what it
/// sends through its [`Ready`]; `run` goes on running after it has sent it.
pub fn start<T, F, Fut>(name: &str, run: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce(Ready<T>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (ready, started) = std::sync::mpsc::channel();
    let what = name.to_string();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(run(ready)),
                Err(e) => {
                    let _ = ready.send(Err(anyhow::anyhow!("{what} runtime: {e}")));
                }
            }
        })?;
    started
        .recv()
        .map_err(|_| anyhow::anyhow!("the {name} thread ended before starting"))?
}
