//! The `synq` binary: parse arguments, run the library, map the outcome to an exit status
//! (0 ok, 1 error, 2 result with warnings).

use clap::Parser;

fn main() {
    let cli = synq::app::Cli::parse();
    let status = match synq::app::run(&cli) {
        Ok(outcome) => synq::app::emit(&outcome),
        Err(e) => {
            eprintln!("synq: {e}");
            1
        }
    };
    std::process::exit(status);
}
