// The Klaro configuration of the browser tests' shop page (served with klaro-0.7.22/klaro.js).
var klaroConfig = {
    storageMethod: 'cookie',
    cookieName: 'klaro',
    cookieExpiresAfterDays: 30,
    default: false,
    mustConsent: false,
    acceptAll: true,
    services: [
        {name: 'matomo', title: 'Matomo', purposes: ['analytics'], cookies: [/^_pk_/]},
    ],
};
