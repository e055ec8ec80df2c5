//! Errors as the examples print them: the message and its causes as text, not a `Debug` dump.
//! Shared by the MNIST examples (through `common/mod.rs`) and the text examples.

use std::process::ExitCode;

/// Any error an example can end with.
pub type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Runs an example's `main`, printing an error and its causes as text (not a `Debug` dump).
pub fn report_errors(result: AnyResult<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut shown = e.to_string();
            let mut cause = e.source();
            while let Some(c) = cause {
                // Our errors quote their cause's text (`I/O error: ...`); print a cause only
                // when it adds something.
                let text = c.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                shown = text;
                cause = c.source();
            }
            ExitCode::FAILURE
        }
    }
}
