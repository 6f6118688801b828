//! `synq doctor`: what will work on this host (or in a dump), one check per line, with what to do.

use crate::app::{Options, Outcome};
use crate::session::Error;

/// Runs the checks.
pub fn run(_opts: &Options) -> Result<Outcome, Error> {
    Err(Error::Internal("synq doctor is not written yet"))
}
