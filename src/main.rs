//! The `synq` binary: parse arguments ([`cli`]), run the library, map the outcome to an exit status
//! (0 ok, 1 error, 2 result with warnings, 64 usage error).

mod cli;

use clap::Parser;

/// A bad option or argument (sysexits' EX_USAGE): not 2, which means "result printed, with warnings".
const EXIT_USAGE: i32 = 64;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; everything else is a usage error.
            let _ = e.print();
            std::process::exit(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    if let Some(local) = cli.local() {
        let status = match cli::run_local(local) {
            Ok(()) => 0,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
            Err(e) => {
                eprintln!("synq: writing output: {e}");
                1
            }
        };
        std::process::exit(status);
    }
    let opts = cli.options();
    let status = match synq::app::run(&opts) {
        Ok(outcome) => synq::app::emit(&outcome),
        Err(e) => {
            eprintln!("synq: {e}");
            1
        }
    };
    std::process::exit(status);
}
