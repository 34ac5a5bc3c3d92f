use super::Effects;

/// Echo: every byte received is sent back, unchanged.
#[derive(Debug, Default)]
pub struct Echo;

impl Echo {
    pub fn handle(&mut self, input: &[u8], fx: &mut Effects<'_>) -> usize {
        fx.reply.extend_from_slice(input);
        input.len()
    }
}
