//! `print!` / `println!` over the SBI console, serialised between harts.

use core::fmt::{self, Write};

/// Held while one `print!` writes, so that lines from different harts do not interleave.
/// Interrupt handlers do not print, so a plain spinlock cannot deadlock against them.
static CONSOLE: spin::Mutex<Console> = spin::Mutex::new(Console);

struct Console;

impl Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            crate::sbi::console_putchar(byte);
        }
        Ok(())
    }
}

/// Formats straight to the console: no allocation, so it works with the heap locked or broken.
pub fn print(args: fmt::Arguments) {
    // A console write cannot fail; the result carries nothing.
    let _ = CONSOLE.lock().write_fmt(args);
}

/// For the panic handler: prints even if this hart panicked while holding the console lock.
pub fn print_panic(args: fmt::Arguments) {
    let mut console = Console;
    if let Some(mut guard) = CONSOLE.try_lock() {
        let _ = guard.write_fmt(args);
    } else {
        let _ = console.write_fmt(args);
    }
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!($($arg)*))
    };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => {
        $crate::print!("\n")
    };
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
