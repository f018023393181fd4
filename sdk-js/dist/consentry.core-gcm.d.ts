export * from './types/headless-gcm';
