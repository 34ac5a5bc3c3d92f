use super::Effects;

/// Upper-case echo, the classic teaching server: ASCII letters are upper-cased, every
/// other byte is sent back as is.
#[derive(Debug, Default)]
pub struct Upper;

impl Upper {
    pub fn handle(&mut self, input: &[u8], fx: &mut Effects<'_>) -> usize {
        let start = fx.reply.len();
        fx.reply.extend_from_slice(input);
        fx.reply[start..].make_ascii_uppercase();
        input.len()
    }
}
