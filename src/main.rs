//! The `synq` binary: parse arguments ([`cli`]), run the library, map the outcome to an exit status
//! (0 ok, 1 error, 2 result with warnings).

mod cli;

use clap::Parser;

fn main() {
    let opts = cli::Cli::parse().options();
    let status = match synq::app::run(&opts) {
        Ok(outcome) => synq::app::emit(&outcome),
        Err(e) => {
            eprintln!("synq: {e}");
            1
        }
    };
    std::process::exit(status);
}
