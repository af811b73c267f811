pub fn dump() {}
