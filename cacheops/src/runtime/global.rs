//! The process-wide handle: [`install`]ed, or made from the environment on
//! first use by [`global`].

use std::sync::RwLock;

use super::Cacheops;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};

/// The process-wide handle, and whether [`install`] put it there (rather than
/// [`global`] from the environment, for want of one).
static GLOBAL: RwLock<Option<(&'static Cacheops, bool)>> = RwLock::new(None);

/// Installs the process-wide handle. Fails if [`install`] was called already.
///
/// The order of `install` and [`global`] does not matter: when `global` (or
/// something that uses it, such as `CachedConnection::establish` for pools) ran
/// first and installed the environment's configuration, `install` replaces it for
/// every later call. What took the first handle before keeps it (it lives on).
///
/// ```
/// let implicit = cacheops::global().unwrap(); // from the environment
/// cacheops::install(cacheops::Config::builder().url("memory://").prefix("app").build()).unwrap();
/// assert_eq!(cacheops::global().unwrap().config().prefix(), "app");
/// assert!(cacheops::install(cacheops::Config::builder().build()).is_err(), "installed already");
/// # let _ = implicit;
/// ```
pub fn install(config: Config) -> Result<()> {
    let handle = Cacheops::new(config)?;
    let mut global = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    if let Some((_, true)) = *global {
        return Err(Error::new(
            ErrorKind::Config,
            "cacheops is installed already",
        ));
    }
    if global.is_some() {
        tracing::info!(
            "cacheops: install() replaces the handle global() made from the environment"
        );
    }
    *global = Some((Box::leak(Box::new(handle)), true));
    Ok(())
}

/// The process-wide handle: the one [`install`]ed, else one made from the
/// environment ([`Config::from_env`]) on first use (which a later `install`
/// replaces).
pub fn global() -> Result<&'static Cacheops> {
    if let Some((handle, _)) = *GLOBAL.read().unwrap_or_else(|e| e.into_inner()) {
        return Ok(handle);
    }
    let handle = Cacheops::new(Config::from_env()?)?;
    let mut global = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    // Another thread may have installed one meanwhile: it wins.
    Ok(global
        .get_or_insert_with(|| (Box::leak(Box::new(handle)), false))
        .0)
}
