mod data;
mod train;
