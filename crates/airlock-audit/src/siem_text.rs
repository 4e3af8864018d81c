//! What the SIEM encoders share about text: no control character reaches a field.

/// A control character (newline, carriage return, NUL, escape...) as a space; any other
/// character as it is.
pub(crate) fn clean(c: char) -> char {
    if c.is_control() {
        ' '
    } else {
        c
    }
}
